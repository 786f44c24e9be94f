"""DynamoDB items of the invoice suffix space (payments.charges.invoices), in the charges table.

Items (pk / sk):
  INVOICE_RING#<terminal>#<shard> / RING           a ring's counter `n`, its marks `m`
                                                    (index mod 40 -> epoch s) and `fullUntil`
  INVOICE_SUFFIX#<terminal>#<last6> / INVOICE_SUFFIX  who holds a suffix, until `expiresAt` (TTL;
                                                    written by the charge's create transaction)
  TERMINAL#<terminal>             / INVOICE_LANE   the terminal's lane (prefix digit pair)
  INVOICE_LANE#<lane>             / INVOICE_LANE   which terminal holds a lane (a unique guard)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payments.aws.dynamo import DynamoCalls, _epoch, _put_new, from_attributes, to_attributes
from payments.charges.invoices import MAX_LANES, RingTicket, SuffixHolder
from payments.errors import ConfigurationError, DuplicateKeyError
from payments.shared.clock import iso


def suffix_key(terminal_id: str, suffix: str) -> str:
    """The partition key of a terminal's suffix reservation."""
    return f"INVOICE_SUFFIX#{terminal_id.strip().lower()}#{suffix}"


def suffix_guard(
    table: str,
    terminal_id: str,
    invoice_id: str,
    holder: dict[str, str],
    expires: datetime,
    now: datetime,
) -> dict[str, Any]:
    """The transaction item that reserves an invoice id's last six digits on its terminal until
    `expires` (taken unless a reservation of them is still alive); `holder` names what holds it
    (`chargeId` or `setupId`)."""
    return {
        "Put": {
            "TableName": table,
            "Item": to_attributes(
                {
                    "pk": suffix_key(terminal_id, invoice_id[-6:]),
                    "sk": "INVOICE_SUFFIX",
                    "invoiceId": invoice_id,
                    **holder,
                    "expiresAt": _epoch(expires),
                }
            ),
            "ConditionExpression": "attribute_not_exists(pk) OR expiresAt < :now",
            "ExpressionAttributeValues": {":now": {"N": str(_epoch(now))}},
        }
    }


def _ring_pk(terminal_id: str, shard: int) -> str:
    return f"INVOICE_RING#{terminal_id.strip().lower()}#{shard:02d}"


def _ring_key(terminal_id: str, shard: int) -> dict[str, Any]:
    return {"pk": {"S": _ring_pk(terminal_id, shard)}, "sk": {"S": "RING"}}


class DynamoInvoiceSpace:
    """The rings' counters, marks and lanes (one small item each), and suffix holders."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._db = DynamoCalls(client)

    def lane(self, terminal_id: str) -> int:
        """The terminal's lane: read, or given once (the lowest free lane, by a transaction
        with the lane's guard), then always the same."""
        terminal = terminal_id.strip().lower()
        for candidate in range(MAX_LANES):
            kept = self._kept_lane(terminal)
            if kept is not None:
                return kept
            stamp = {"terminalId": terminal, "at": iso(datetime.now(UTC))}
            try:
                self._db.write(
                    [
                        _put_new(
                            self._table,
                            {"pk": f"TERMINAL#{terminal}", "sk": "INVOICE_LANE", "lane": candidate}
                            | stamp,
                        ),
                        _put_new(
                            self._table,
                            {"pk": f"INVOICE_LANE#{candidate}", "sk": "INVOICE_LANE"} | stamp,
                        ),
                    ],
                    ["terminal", "lane"],
                )
            except DuplicateKeyError:
                continue  # the lane is another terminal's, or this terminal got one meanwhile
            return candidate
        raise ConfigurationError(f"no invoice lane left (at most {MAX_LANES} terminals)")

    def _kept_lane(self, terminal: str) -> int | None:
        item = self._db.get(self._table, f"TERMINAL#{terminal}", "INVOICE_LANE")
        return int(item["lane"]) if item else None

    def take(self, terminal_id: str, shard: int, now: datetime, count: int = 1) -> RingTicket:
        """Advance the ring's counter by `count` (one UpdateItem, 1 WCU) unless it is marked
        full."""
        answer = self._db.call_if(
            "update_item",
            TableName=self._table,
            Key=_ring_key(terminal_id, shard),
            UpdateExpression="ADD n :count SET m = if_not_exists(m, :none)",
            ConditionExpression="attribute_not_exists(fullUntil) OR fullUntil <= :now",
            ExpressionAttributeValues={
                ":count": {"N": str(count)},
                ":now": {"N": str(_epoch(now))},
                ":none": {"M": {}},
            },
            ReturnValues="ALL_NEW",
        )
        if answer is None:
            item = self._db.get(self._table, _ring_pk(terminal_id, shard), "RING") or {}
            until = int(item.get("fullUntil", _epoch(now) + 60))
            return RingTicket(0, {}, full_until=datetime.fromtimestamp(until, UTC))
        item = from_attributes(answer["Attributes"])
        marks = {int(k): int(v) for k, v in (item.get("m") or {}).items()}
        return RingTicket(int(item["n"]), marks, count=count)

    def mark(self, terminal_id: str, shard: int, mark: int, now: datetime) -> None:
        """Write when the ring reached a mark (its map exists from the first take)."""
        self._db.call(
            "update_item",
            TableName=self._table,
            Key=_ring_key(terminal_id, shard),
            UpdateExpression="SET m.#k = :at",
            ExpressionAttributeNames={"#k": str(mark)},
            ExpressionAttributeValues={":at": {"N": str(_epoch(now))}},
        )

    def mark_full(
        self, terminal_id: str, shard: int, n: int, until: datetime, last: int | None = None
    ) -> None:
        """Mark the ring full until `until`, giving slots n..last (last: n when None) back when
        nobody took a later one."""
        taken_to = n if last is None else last
        values = {":until": {"N": str(_epoch(until))}, ":n": {"N": str(taken_to)}}
        rewound = self._db.call_if(
            "update_item",
            TableName=self._table,
            Key=_ring_key(terminal_id, shard),
            UpdateExpression="SET fullUntil = :until, n = :back",
            ConditionExpression="n = :n",
            ExpressionAttributeValues=values | {":back": {"N": str(n - 1)}},
        )
        if rewound is None:
            self._db.call(
                "update_item",
                TableName=self._table,
                Key=_ring_key(terminal_id, shard),
                UpdateExpression="SET fullUntil = :until",
                ExpressionAttributeValues={":until": values[":until"]},
            )

    def suffix_holder(self, terminal_id: str, suffix: str) -> SuffixHolder | None:
        """Who holds a suffix of the terminal (the reservation may have expired)."""
        item = self._db.get(self._table, suffix_key(terminal_id, suffix), "INVOICE_SUFFIX")
        if not item:
            return None
        return SuffixHolder(
            str(item["invoiceId"]), datetime.fromtimestamp(int(item["expiresAt"]), UTC)
        )
