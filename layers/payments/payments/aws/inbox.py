"""DynamoDB inbox of postLink notifications (the `Inbox` port of payments.charges.ports).

Items (in the payments table, pk / sk):
  POSTLINKS#<invoiceId> / INBOX#<sha256 of the exact body>   a notification, in its invoice's
                                                             own partition (inbox id
                                                             `<invoiceId>.<sha256>`)
  INBOX#<sha256>        / INBOX                              one stored before 2026-12-06 (bare
                                                             sha256 id): read and replayed,
                                                             never written anew; gone by TTL
                                                             30 days after
Each holds what verification and audit need of the notification (`notification`: ePay's fields
without the secret or the payer's contacts, the card id masked), the digest of its
`secret_hash`, content type, route, source IP, first and last receipt, the number of
deliveries, the verdict and its detail, the invoice and charge ids, and `expiresAt` (TTL). An
operator's replay adds `replays`, `lastReplayedBy` (the IAM caller) and `lastReplayedAt`.

The key is the invoice and the body's digest (the invoice id is part of the body), so the same
body delivered again is the same item. A charge's timeline lists its invoice's notifications
with one Query of that partition (strongly consistent, at most MAX_LISTED, never the digest of
the secret): no index entry is written for a notification (issue 16: one WRU less per postLink)
and none is read. Items stored before still carry ChargeListIndex keys (`chargeList` =
`INBOX#<invoiceId>`) until they expire; the timeline no longer reads them (docs/decisions.md,
2026-12-06), a replay by their bare digest still finds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from payments.aws.dynamo import DynamoCalls, from_attributes
from payments.charges.inbox_records import (
    InboxEntry,
    InboxRecord,
    StoredVerdict,
    Verdict,
    inbox_id_for,
    split_inbox_id,
)
from payments.charges.notifications import Route
from payments.shared import jsonutil
from payments.shared.clock import from_iso, iso

INBOX_TTL = timedelta(days=30)
# The most notifications a timeline lists for one invoice (one Query page). ePay sends one or
# two per invoice (its retries are the same body, one item); more means someone posts many
# bodies for one invoice, and then the page holds MAX_LISTED of them in digest order.
MAX_LISTED = 100
_SK_PREFIX = "INBOX#"
_REASON_CODE = re.compile(r"-?[0-9]{1,9}")
# What a timeline reads of an item (never the digest of the secret).
_LISTED = ("sk", "receivedAt", "route", "verdict", "detail", "deliveries", "notification")
_LISTED_NAMES = {f"#a{n}": name for n, name in enumerate(_LISTED)}


def invoice_partition(invoice_id: str) -> str:
    """The partition key of an invoice's notifications."""
    return f"POSTLINKS#{invoice_id}"


def _key(inbox_id: str) -> dict[str, Any]:
    """Where the item an inbox id names is: its invoice's partition, or (a bare digest) the
    item of its own that a notification got before 2026-12-06."""
    invoice_id, digest = split_inbox_id(inbox_id)
    if invoice_id is None:
        return {"pk": _s(f"INBOX#{digest}"), "sk": _s("INBOX")}
    return {"pk": _s(invoice_partition(invoice_id)), "sk": _s(f"{_SK_PREFIX}{digest}")}


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
        """Store the record unless one of this invoice and digest exists, else count one more
        delivery: one UpdateItem either way (every attribute `if_not_exists`, `deliveries`
        added), no index entry. Returns what the earlier delivery left, or None when the record
        is new."""
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
        names = {f"#k{n}": name for n, name in enumerate(kept)}
        values = {f":k{n}": value for n, value in enumerate(kept.values())}
        setters = [f"#k{n} = if_not_exists(#k{n}, :k{n})" for n in range(len(kept))]
        answer = self._db.call(
            "update_item",
            TableName=self._table,
            Key=_key(inbox_id_for(record.invoice_id, record.digest)),
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
        inbox_id: str,
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
            Key=_key(inbox_id),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def stored(self, inbox_id: str) -> InboxRecord | None:
        """The record `inbox_id` names, strongly consistent, or None."""
        key = _key(inbox_id)
        item = self._db.get(self._table, key["pk"]["S"], key["sk"]["S"])
        if item is None:
            return None
        digest = split_inbox_id(inbox_id)[1]
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
        """The invoice's notifications, oldest first: one Query of its partition (strongly
        consistent, at most MAX_LISTED items, only what a timeline shows)."""
        answer = self._db.call(
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :inbox)",
            ExpressionAttributeValues={
                ":pk": _s(invoice_partition(invoice_id)),
                ":inbox": _s(_SK_PREFIX),
            },
            ProjectionExpression=", ".join(_LISTED_NAMES),
            ExpressionAttributeNames=_LISTED_NAMES,
            ConsistentRead=True,
            Limit=MAX_LISTED,
        )
        entries = [_entry(invoice_id, from_attributes(item)) for item in answer.get("Items", [])]
        return sorted(entries, key=lambda entry: (entry.received_at, entry.inbox_id))


def _entry(invoice_id: str, item: dict[str, Any]) -> InboxEntry:
    kept = jsonutil.loads(str(item.get("notification") or "{}"))
    reason = str(kept.get("reasonCode", "")).strip()
    detail = str(item.get("detail") or "")
    return InboxEntry(
        inbox_id=inbox_id_for(invoice_id, str(item["sk"]).removeprefix(_SK_PREFIX)),
        received_at=from_iso(item["receivedAt"]),
        route=Route(item["route"]),
        verdict=Verdict(item["verdict"]),
        detail="" if detail == "-" else detail,
        deliveries=int(item.get("deliveries") or 1),
        code=str(kept["code"]) if kept.get("code") else None,
        reason_code=int(reason) if _REASON_CODE.fullmatch(reason) else None,
    )
