"""DynamoDB inbox of postLink notifications (the `Inbox` port of payments.charges.ports).

Item (in the payments table): `INBOX#<sha256 of the exact body>` / `INBOX`, with what
verification and audit need of the notification (`notification`: ePay's fields without the
secret or the payer's contacts, the card id masked), the digest of its `secret_hash`, content
type, route, source IP, first and last receipt, the number of deliveries, the verdict and its
detail, the invoice and charge ids, and `expiresAt` (TTL). An operator's replay adds
`replays`, `lastReplayedBy` (the IAM caller) and `lastReplayedAt`.

A notification with an invoice id is listed in the table's keys-only ChargeListIndex under
`chargeList` = `INBOX#<invoiceId>`, `chargeSort` = `<receivedAt ISO>#<digest>` (written once,
with the item), so a charge's timeline finds its invoice's notifications with one Query and one
BatchGetItem, never a Scan. Items stored before these keys existed are not listed (no backfill;
they expire with their TTL).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from payments.aws.dynamo import DynamoCalls
from payments.charges.inbox_records import InboxEntry, InboxRecord, StoredVerdict, Verdict
from payments.charges.notifications import Route
from payments.shared import jsonutil
from payments.shared.clock import from_iso, iso

INBOX_TTL = timedelta(days=30)
LIST_INDEX = "ChargeListIndex"
# The most notifications a timeline lists for one invoice (one Query page, one BatchGetItem).
MAX_LISTED = 100
_BATCH_ROUNDS = 5
_REASON_CODE = re.compile(r"-?[0-9]{1,9}")
# What a timeline reads of an item (never the digest of the secret).
_LISTED = ("pk", "receivedAt", "route", "verdict", "detail", "deliveries", "notification")
_LISTED_NAMES = {f"#a{n}": name for n, name in enumerate(_LISTED)}


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

    def keep(
        self, record: InboxRecord, *, charge_id: str | None, detail: str
    ) -> StoredVerdict | None:
        """Store the record unless one with this digest exists, else count one more delivery:
        one UpdateItem either way (every attribute `if_not_exists`, `deliveries` added). Returns
        what the earlier delivery left, or None when the record is new."""
        now = iso(record.received_at)
        expires = int((self._clock() + self._ttl).timestamp())
        kept: dict[str, Any] = {
            "notification": _s(jsonutil.dumps(dict(record.notification))),
            "route": _s(record.route.value),
            "receivedAt": _s(now),
            "verdict": _s(record.verdict.value),
            "expiresAt": {"N": str(expires)},
        }
        optional = {
            "contentType": record.content_type,
            "sourceIp": record.source_ip,
            "invoiceId": record.invoice_id,
            "secretHashDigest": record.secret_hash_digest,
            "chargeId": charge_id,
        }
        kept.update({k: _s(v[:256]) for k, v in optional.items() if v})
        if record.verdict is not Verdict.RECEIVED:
            # Decided before it was stored (forged, or in agreement with the charge).
            kept["handledAt"] = _s(now)
            kept["detail"] = _s(detail[:500] or "-")
        if record.invoice_id:
            # Listed under its invoice (ChargeListIndex), oldest first, for a charge's timeline.
            kept["chargeList"] = _s(inbox_list(record.invoice_id[:256]))
            kept["chargeSort"] = _s(f"{now}#{record.digest}")
        names = {f"#k{n}": name for n, name in enumerate(kept)}
        values = {f":k{n}": value for n, value in enumerate(kept.values())}
        setters = [f"#k{n} = if_not_exists(#k{n}, :k{n})" for n in range(len(kept))]
        answer = self._db.call(
            "update_item",
            TableName=self._table,
            Key=_key(record.digest),
            UpdateExpression="SET "
            + ", ".join([*setters, "lastReceivedAt = :at"])
            + " ADD deliveries :one",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values, ":at": _s(now), ":one": {"N": "1"}},
            ReturnValues="ALL_OLD",
        )
        old = answer.get("Attributes")
        if not old or "verdict" not in old:
            return None
        return StoredVerdict(
            verdict=Verdict(old["verdict"]["S"]),
            deliveries=int(old.get("deliveries", {}).get("N", "0")) + 1,
            received_at=from_iso(old["receivedAt"]["S"]),
            charge_id=old.get("chargeId", {}).get("S"),
            detail=old.get("detail", {}).get("S", ""),
        )

    def record_verdict(
        self,
        digest: str,
        verdict: Verdict,
        at: datetime,
        *,
        charge_id: str | None,
        detail: str,
        replayed_by: str | None = None,
    ) -> None:
        """Write what the intake concluded (the last delivery handled has the last word); a
        replay also counts itself and names who asked for it."""
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
        if replayed_by:
            expression += ", lastReplayedBy = :who, lastReplayedAt = :at ADD replays :one"
            values[":who"] = _s(replayed_by[:512])
            values[":one"] = {"N": "1"}
        self._db.call(
            "update_item",
            TableName=self._table,
            Key=_key(digest),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def stored(self, digest: str) -> InboxRecord | None:
        """The record kept under `digest`, strongly consistent, or None."""
        item = self._db.get(self._table, f"INBOX#{digest}", "INBOX")
        if item is None:
            return None
        kept = jsonutil.loads(str(item.get("notification") or "{}"))
        return InboxRecord(
            digest=digest,
            notification={str(k): str(v) for k, v in dict(kept).items()},
            content_type=item.get("contentType"),
            route=Route(item["route"]),
            source_ip=item.get("sourceIp"),
            received_at=from_iso(item["receivedAt"]),
            verdict=Verdict(item["verdict"]),
            invoice_id=item.get("invoiceId"),
            secret_hash_digest=item.get("secretHashDigest"),
        )

    def for_invoice(self, invoice_id: str) -> list[InboxEntry]:
        """The invoice's notifications, oldest first: one Query of ChargeListIndex (keys only,
        at most MAX_LISTED), then one BatchGetItem of the items (strongly consistent; unprocessed
        keys asked again, a few rounds)."""
        answer = self._db.call(
            "query",
            TableName=self._table,
            IndexName=LIST_INDEX,
            KeyConditionExpression="chargeList = :list",
            ExpressionAttributeValues={":list": _s(inbox_list(invoice_id))},
            ScanIndexForward=True,
            Limit=MAX_LISTED,
        )
        order = [str(i["pk"]["S"]) for i in answer.get("Items", [])]
        found: dict[str, InboxEntry] = {}
        keys = [{"pk": _s(pk), "sk": _s("INBOX")} for pk in dict.fromkeys(order)]
        for item in self._db.batch_get(self._table, keys, _BATCH_ROUNDS, _LISTED_NAMES):
            found[str(item["pk"])] = _entry(item)
        return [found[pk] for pk in order if pk in found]


def inbox_list(invoice_id: str) -> str:
    """The ChargeListIndex partition of an invoice's notifications."""
    return f"INBOX#{invoice_id}"


def _entry(item: dict[str, Any]) -> InboxEntry:
    kept = jsonutil.loads(str(item.get("notification") or "{}"))
    reason = str(kept.get("reasonCode", "")).strip()
    detail = str(item.get("detail") or "")
    return InboxEntry(
        digest=str(item["pk"]).removeprefix("INBOX#"),
        received_at=from_iso(item["receivedAt"]),
        route=Route(item["route"]),
        verdict=Verdict(item["verdict"]),
        detail="" if detail == "-" else detail,
        deliveries=int(item.get("deliveries") or 1),
        code=str(kept["code"]) if kept.get("code") else None,
        reason_code=int(reason) if _REASON_CODE.fullmatch(reason) else None,
    )
