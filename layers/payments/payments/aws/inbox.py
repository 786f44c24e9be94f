"""DynamoDB inbox of postLink notifications (the `Inbox` port of payments.charges.ports).

Item (in the payments table): `INBOX#<sha256 of the exact body>` / `INBOX`, with what
verification and audit need of the notification (`notification`: ePay's fields without the
secret or the payer's contacts, the card id masked), the digest of its `secret_hash`, content
type, route, source IP, first and last receipt, the number of deliveries, the verdict and its
detail, the invoice and charge ids, and `expiresAt` (TTL).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from payments.aws.dynamo import DynamoCalls
from payments.charges.inbox_records import InboxRecord, StoredVerdict, Verdict
from payments.shared import jsonutil
from payments.shared.clock import from_iso, iso

INBOX_TTL = timedelta(days=30)


def _key(digest: str) -> dict[str, Any]:
    return {"pk": {"S": f"INBOX#{digest}"}, "sk": {"S": "INBOX"}}


def _s(value: str) -> dict[str, str]:
    return {"S": value}


class DynamoInbox:
    """Well-formed postLink notifications (what verification and audit need), written once per
    distinct body, kept for `ttl`."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        *,
        ttl: timedelta = INBOX_TTL,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._table = table_name
        self._db = DynamoCalls(client)
        self._ttl = ttl
        self._clock = clock or (lambda: datetime.now(UTC))

    def put_new(self, record: InboxRecord) -> bool:
        """Store the record unless one with this digest exists (then False)."""
        expires = int((self._clock() + self._ttl).timestamp())
        item: dict[str, Any] = {
            **_key(record.digest),
            "notification": _s(jsonutil.dumps(dict(record.notification))),
            "route": _s(record.route.value),
            "receivedAt": _s(iso(record.received_at)),
            "lastReceivedAt": _s(iso(record.received_at)),
            "deliveries": {"N": "1"},
            "verdict": _s(record.verdict.value),
            "expiresAt": {"N": str(expires)},
        }
        optional = {
            "contentType": record.content_type,
            "sourceIp": record.source_ip,
            "invoiceId": record.invoice_id,
            "secretHashDigest": record.secret_hash_digest,
        }
        item.update({k: _s(v[:256]) for k, v in optional.items() if v})
        answer = self._db.call_if(
            "put_item",
            TableName=self._table,
            Item=item,
            ConditionExpression="attribute_not_exists(pk)",
        )
        return answer is not None

    def seen_again(self, digest: str, at: datetime) -> StoredVerdict:
        """Count one more delivery of a stored body; return its verdict (one UpdateItem)."""
        answer = self._db.call(
            "update_item",
            TableName=self._table,
            Key=_key(digest),
            UpdateExpression="ADD deliveries :one SET lastReceivedAt = :at",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":one": {"N": "1"}, ":at": _s(iso(at))},
            ReturnValues="ALL_NEW",
        )
        item = answer["Attributes"]
        return StoredVerdict(
            verdict=Verdict(item["verdict"]["S"]),
            deliveries=int(item["deliveries"]["N"]),
            received_at=from_iso(item["receivedAt"]["S"]),
            charge_id=item.get("chargeId", {}).get("S"),
            detail=item.get("detail", {}).get("S", ""),
        )

    def record_verdict(
        self, digest: str, verdict: Verdict, at: datetime, *, charge_id: str | None, detail: str
    ) -> None:
        """Write what the intake concluded (the last delivery handled has the last word)."""
        names = {"#v": "verdict"}
        values: dict[str, Any] = {
            ":v": _s(verdict.value),
            ":at": _s(iso(at)),
            ":d": _s(detail[:500] or "-"),
        }
        expression = "SET #v = :v, handledAt = :at, detail = :d"
        if charge_id:
            expression += ", chargeId = :c"
            values[":c"] = _s(charge_id)
        self._db.call(
            "update_item",
            TableName=self._table,
            Key=_key(digest),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
