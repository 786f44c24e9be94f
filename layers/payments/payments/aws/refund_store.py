"""DynamoDB access for refunds, in the charges table, written with their charge.

Items (pk / sk):
  CHARGE#<charge id> / REFUND#<refund id>  the refund (beside its charge, so a charge's refunds
                                           are one query), with `version`; while PENDING also
                                           `dueShard` = RDUE#<n> and `nextCheckAt` (DueIndex)
  REFUND#<refund id> / REFUND              which charge the refund belongs to
  REFUNDKEY#<key>    / REFUNDKEY           the refund an Idempotency-Key created (TTL)

A refund is created and settled in one transaction with its charge (the charge's reservation and
refunded amount), through the charge writer (payments.charges.transitions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from payments.aws.charge_store import DynamoChargeStore
from payments.aws.dynamo import (
    DynamoCalls,
    _epoch,
    _put_new,
    due_keys,
    from_attributes,
    to_attributes,
)
from payments.charges.model import Charge, HistoryEntry
from payments.charges.transitions import Writer
from payments.refunds.model import REFUND_DUE_SHARDS, Refund, RefundError, RefundStatus
from payments.shared.clock import from_iso, from_iso_or_none, iso
from payments.shared.idempotency import IdempotencyRecord


def refund_to_item(refund: Refund) -> dict[str, Any]:
    """The DynamoDB attributes (plain values) of a refund."""
    due = refund.next_check_at is not None and refund.status is RefundStatus.PENDING
    shard = hashlib.sha256(refund.id.encode()).digest()[0] % REFUND_DUE_SHARDS
    return {
        "pk": f"CHARGE#{refund.charge_id}",
        "sk": f"REFUND#{refund.id}",
        "id": refund.id,
        "chargeId": refund.charge_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status.value,
        "version": refund.version,
        "idempotencyKey": refund.idempotency_key,
        "requestHash": refund.request_hash,
        "createdAt": iso(refund.created_at),
        "updatedAt": iso(refund.updated_at),
        "reason": refund.reason,
        "metadata": refund.metadata or None,
        "error": None
        if refund.error is None
        else {"code": refund.error.code, "message": refund.error.message},
        "checkAttempts": refund.check_attempts,
        "dueShard": f"RDUE#{shard}" if due else None,
        "nextCheckAt": iso(refund.next_check_at) if due and refund.next_check_at else None,
    }


def refund_from_item(item: Mapping[str, Any]) -> Refund:
    """Rebuild a refund from its attributes (plain values)."""
    error = item.get("error")
    return Refund(
        id=str(item["id"]),
        charge_id=str(item["chargeId"]),
        amount=Decimal(item["amount"]),
        currency=str(item["currency"]),
        status=RefundStatus(item["status"]),
        idempotency_key=str(item["idempotencyKey"]),
        request_hash=str(item["requestHash"]),
        created_at=from_iso(item["createdAt"]),
        updated_at=from_iso(item["updatedAt"]),
        reason=item.get("reason"),
        metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
        version=int(item["version"]),
        error=RefundError(str(error["code"]), str(error["message"])) if error else None,
        next_check_at=from_iso_or_none(item.get("nextCheckAt")),
        check_attempts=int(item.get("checkAttempts", 0)),
    )


class DynamoRefundStore:
    """Refunds beside their charges, written in the charge's transactions."""

    def __init__(
        self,
        table_name: str,
        charges: DynamoChargeStore,
        *,
        idempotency_ttl: timedelta = timedelta(days=30),
    ) -> None:
        self._table = table_name
        self._charges = charges
        self._db = DynamoCalls(charges.client)
        self._idempotency_ttl = idempotency_ttl

    def get(self, refund_id: str) -> Refund | None:
        """Read a refund: its pointer, then the refund beside its charge."""
        pointer = self._db.get(self._table, f"REFUND#{refund_id}", "REFUND")
        if pointer is None:
            return None
        item = self._db.get(self._table, f"CHARGE#{pointer['chargeId']}", f"REFUND#{refund_id}")
        return refund_from_item(item) if item else None

    def list_for_charge(self, charge_id: str) -> list[Refund]:
        """A charge's refunds, oldest first (one query)."""
        items: list[dict[str, Any]] = []
        page: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :r)",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"CHARGE#{charge_id}"},
                ":r": {"S": "REFUND#"},
            },
            "ConsistentRead": True,
        }
        while True:
            answer = self._db.call("query", **page)
            items.extend(answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            page["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        refunds = [refund_from_item(from_attributes(i)) for i in items]
        return sorted(refunds, key=lambda r: (r.created_at, r.id))

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """What a refund's key created, or None."""
        item = self._db.get(self._table, f"REFUNDKEY#{key}", "REFUNDKEY")
        if item is None:
            return None
        return IdempotencyRecord(key, str(item["refundId"]), str(item["requestHash"]))

    def reserving(self, refund: Refund) -> Writer:
        """A charge writer adding the new refund, its pointer and its key to the transaction."""

        def write(current: Charge, updated: Charge, entries: list[HistoryEntry]) -> Charge:
            stored, items, names = self._charges.transition_items(current, updated, entries)
            expires = _epoch(refund.created_at + self._idempotency_ttl)
            items += [
                _put_new(self._table, refund_to_item(refund)),
                _put_new(
                    self._table,
                    {"pk": f"REFUND#{refund.id}", "sk": "REFUND", "chargeId": refund.charge_id},
                ),
                _put_new(
                    self._table,
                    {
                        "pk": f"REFUNDKEY#{refund.idempotency_key}",
                        "sk": "REFUNDKEY",
                        "refundId": refund.id,
                        "chargeId": refund.charge_id,
                        "requestHash": refund.request_hash,
                        "expiresAt": expires,
                    },
                ),
            ]
            self._db.write(items, [*names, "refund", "refund_pointer", "refund_key"])
            return stored

        return write

    def settling(self, before: Refund, after: Refund) -> Writer:
        """A charge writer replacing the refund (if unchanged since read) in the transaction."""

        def write(current: Charge, updated: Charge, entries: list[HistoryEntry]) -> Charge:
            stored, items, names = self._charges.transition_items(current, updated, entries)
            items.append({"Put": self._versioned_put(before, after)})
            self._db.write(items, [*names, "refund"])
            return stored

        return write

    def update(self, before: Refund, after: Refund) -> Refund:
        """Replace the refund alone, if unchanged since `before` was read."""
        self._db.call("put_item", **self._versioned_put(before, after))
        return after

    def _versioned_put(self, before: Refund, after: Refund) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "Item": to_attributes(refund_to_item(after)),
            "ConditionExpression": "#v = :version",
            "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":version": {"N": str(before.version)}},
        }

    def due(self, shard: int, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(charge id, refund id) of refunds due for a check, from one shard of DueIndex."""
        keys = due_keys(self._db, self._table, f"RDUE#{shard}", iso(now), limit)
        return [(pk.removeprefix("CHARGE#"), sk.removeprefix("REFUND#")) for pk, sk in keys]
