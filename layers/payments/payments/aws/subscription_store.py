"""DynamoDB access for subscriptions (the same single table as charges).

Items (pk / sk):
  SUB#<id>                  / SUB                  the subscription, with `status` and `version`;
                                                   `renewShard`/`renewAt` only while a charge is
                                                   to be dispatched (sparse RenewalDueIndex)
  SUBKEY#<Idempotency-Key>  / SUBKEY               the subscription a key created (TTL 30 days)
  ACCOUNT#<accountId>       / SUB#<createdAt>#<id> the account's listing, oldest first
  CYCLE#<id>#<cycle>        / ATTEMPT#<attempt>    the claim on one charge attempt of one cycle:
                                                   written once (attribute_not_exists), it fixes
                                                   what the attempt charges and records its outcome
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from payments.aws.dynamo import DynamoCalls, from_attributes, to_attributes
from payments.shared.clock import from_iso, from_iso_or_none, iso
from payments.shared.idempotency import IdempotencyRecord
from payments.shared.payer import Payer
from payments.subscriptions.calendar import BillingInterval, Interval
from payments.subscriptions.model import (
    ClaimState,
    CycleClaim,
    PastDueReason,
    Subscription,
    SubscriptionStatus,
    renewal_shard,
)

RENEWAL_INDEX = "RenewalDueIndex"
_CHARGEABLE = [SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAST_DUE.value]


def _sub_key(subscription_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"SUB#{subscription_id}"}, "sk": {"S": "SUB"}}


def _claim_key(subscription_id: str, cycle: int, attempt: int) -> dict[str, Any]:
    return {"pk": {"S": f"CYCLE#{subscription_id}#{cycle}"}, "sk": {"S": f"ATTEMPT#{attempt}"}}


def subscription_to_item(sub: Subscription) -> dict[str, Any]:
    """The DynamoDB attributes (plain Python values) of a subscription."""
    return {
        "pk": f"SUB#{sub.id}",
        "sk": "SUB",
        "id": sub.id,
        "accountId": sub.account_id,
        "cardId": sub.card_id,
        "amount": sub.amount,
        "pendingAmount": sub.pending_amount,
        "currency": sub.currency,
        "description": sub.description,
        "intervalUnit": sub.interval.unit.value,
        "intervalCount": sub.interval.count,
        "anchorAt": iso(sub.anchor),
        "status": sub.status.value,
        "version": sub.version,
        "cycle": sub.cycle,
        "attempt": sub.attempt,
        "failures": sub.failures,
        # The dispatcher's sparse index: only subscriptions with a charge to dispatch carry these.
        "renewShard": None if sub.renew_at is None else f"RENEW#{renewal_shard(sub.id)}",
        "renewAt": None if sub.renew_at is None else iso(sub.renew_at),
        "idempotencyKey": sub.idempotency_key,
        "requestHash": sub.request_hash,
        "createdAt": iso(sub.created_at),
        "updatedAt": iso(sub.updated_at),
        **sub.payer.fields(),
        "pastDueReason": sub.past_due_reason.value if sub.past_due_reason else None,
        "paidCycles": sub.paid_cycles,
        "lastChargeId": sub.last_charge_id,
        "pausedAt": iso(sub.paused_at) if sub.paused_at else None,
        "canceledAt": iso(sub.canceled_at) if sub.canceled_at else None,
        "cancelReason": sub.cancel_reason,
    }


def subscription_from_item(item: Mapping[str, Any]) -> Subscription:
    """Rebuild a subscription from its attributes (plain Python values)."""
    pending = item.get("pendingAmount")
    reason = item.get("pastDueReason")
    return Subscription(
        id=str(item["id"]),
        account_id=str(item["accountId"]),
        card_id=str(item["cardId"]),
        amount=Decimal(item["amount"]),
        pending_amount=Decimal(pending) if pending is not None else None,
        currency=str(item["currency"]),
        description=str(item["description"]),
        interval=BillingInterval(Interval(item["intervalUnit"]), int(item["intervalCount"])),
        anchor=from_iso(item["anchorAt"]),
        status=SubscriptionStatus(item["status"]),
        version=int(item["version"]),
        cycle=int(item["cycle"]),
        attempt=int(item["attempt"]),
        failures=int(item["failures"]),
        renew_at=from_iso_or_none(item.get("renewAt")),
        idempotency_key=str(item["idempotencyKey"]),
        request_hash=str(item["requestHash"]),
        created_at=from_iso(item["createdAt"]),
        updated_at=from_iso(item["updatedAt"]),
        payer=Payer.from_fields(item),
        past_due_reason=PastDueReason(reason) if reason else None,
        paid_cycles=int(item.get("paidCycles", 0)),
        last_charge_id=item.get("lastChargeId"),
        paused_at=from_iso_or_none(item.get("pausedAt")),
        canceled_at=from_iso_or_none(item.get("canceledAt")),
        cancel_reason=item.get("cancelReason"),
    )


def claim_to_item(claim: CycleClaim) -> dict[str, Any]:
    """The DynamoDB attributes of a cycle claim."""
    return {
        "pk": f"CYCLE#{claim.subscription_id}#{claim.cycle}",
        "sk": f"ATTEMPT#{claim.attempt}",
        "subscriptionId": claim.subscription_id,
        "cycle": claim.cycle,
        "attempt": claim.attempt,
        "amount": claim.amount,
        "currency": claim.currency,
        "cardId": claim.card_id,
        "accountId": claim.account_id,
        "description": claim.description,
        "claimedAt": iso(claim.claimed_at),
        **claim.payer.fields(),
        "state": claim.state,
        "chargeId": claim.charge_id,
        "pendingEvents": list(claim.pending_events) or None,
        "publishUntil": iso(claim.publish_until) if claim.publish_until else None,
    }


def claim_from_item(item: Mapping[str, Any]) -> CycleClaim:
    """Rebuild a cycle claim."""
    return CycleClaim(
        subscription_id=str(item["subscriptionId"]),
        cycle=int(item["cycle"]),
        attempt=int(item["attempt"]),
        amount=Decimal(item["amount"]),
        currency=str(item["currency"]),
        card_id=str(item["cardId"]),
        account_id=str(item["accountId"]),
        description=str(item["description"]),
        claimed_at=from_iso(item["claimedAt"]),
        payer=Payer.from_fields(item),
        state=ClaimState(item.get("state", ClaimState.CLAIMED)),
        charge_id=item.get("chargeId"),
        pending_events=tuple(str(e) for e in item.get("pendingEvents") or ()),
        publish_until=from_iso_or_none(item.get("publishUntil")),
    )


class DynamoSubscriptionStore:
    """Subscriptions, their keys, listings and cycle claims in the payments table."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        *,
        clock: Callable[[], datetime] | None = None,
        idempotency_ttl: timedelta = timedelta(days=30),
    ) -> None:
        self._table = table_name
        self._db = DynamoCalls(client)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._ttl = idempotency_ttl

    def _put_new(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_attributes(item),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def _put_versioned(self, current: Subscription, stored: Subscription) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": to_attributes(subscription_to_item(stored)),
                "ConditionExpression": "#v = :version",
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":version": {"N": str(current.version)}},
            }
        }

    def create(self, subscription: Subscription) -> None:
        """Subscription, key and listing in one transaction (DuplicateKeyError "idempotency")."""
        sub = subscription
        expires = int((self._clock() + self._ttl).timestamp())
        items = [
            self._put_new(subscription_to_item(sub)),
            self._put_new(
                {
                    "pk": f"SUBKEY#{sub.idempotency_key}",
                    "sk": "SUBKEY",
                    "subscriptionId": sub.id,
                    "requestHash": sub.request_hash,
                    "expiresAt": expires,
                }
            ),
            self._put_new(
                {
                    "pk": f"ACCOUNT#{sub.account_id}",
                    "sk": f"SUB#{iso(sub.created_at)}#{sub.id}",
                    "subscriptionId": sub.id,
                }
            ),
        ]
        names = ["subscription_new", "idempotency", "listing"]
        self._db.call("transact_write_items", names, TransactItems=items)

    def get(self, subscription_id: str) -> Subscription | None:
        """Read a subscription (strongly consistent), or None."""
        answer = self._db.call(
            "get_item", TableName=self._table, Key=_sub_key(subscription_id), ConsistentRead=True
        )
        item = answer.get("Item")
        return subscription_from_item(from_attributes(item)) if item else None

    def get_key(self, key: str) -> IdempotencyRecord | None:
        """Which subscription an Idempotency-Key created."""
        answer = self._db.call(
            "get_item",
            TableName=self._table,
            Key={"pk": {"S": f"SUBKEY#{key}"}, "sk": {"S": "SUBKEY"}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if not item:
            return None
        data = from_attributes(item)
        return IdempotencyRecord(key, str(data["subscriptionId"]), str(data["requestHash"]))

    def list_by_account(
        self, account_id: str, limit: int, after: str | None
    ) -> tuple[list[Subscription], str | None]:
        """One page of an account's subscriptions (oldest first) and the last position read."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :sub)",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"ACCOUNT#{account_id}"},
                ":sub": {"S": "SUB#"},
            },
            "Limit": limit,
            "ConsistentRead": True,
        }
        if after:
            request["ExclusiveStartKey"] = {
                "pk": {"S": f"ACCOUNT#{account_id}"},
                "sk": {"S": after},
            }
        answer = self._db.call("query", **request)
        ids = [item["subscriptionId"]["S"] for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        subs = self._batch_get(ids)
        return [subs[i] for i in ids if i in subs], (last["sk"]["S"] if last else None)

    def _batch_get(self, ids: list[str]) -> dict[str, Subscription]:
        items = self._db.batch_get(self._table, [_sub_key(i) for i in ids])
        subs = (subscription_from_item(item) for item in items)
        return {sub.id: sub for sub in subs}

    def save(self, current: Subscription, updated: Subscription) -> Subscription:
        """Replace the subscription if its version is still the one read (StaleStateError)."""
        stored = replace(updated, version=current.version + 1)
        self._db.call(
            "transact_write_items",
            ["subscription"],
            TransactItems=[self._put_versioned(current, stored)],
        )
        return stored

    def due(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        """(id, renewAt) of due subscriptions in one shard, earliest first (index may lag)."""
        answer = self._db.call(
            "query",
            TableName=self._table,
            IndexName=RENEWAL_INDEX,
            KeyConditionExpression="renewShard = :shard AND renewAt <= :now",
            ExpressionAttributeValues={
                ":shard": {"S": f"RENEW#{shard}"},
                ":now": {"S": iso(now)},
            },
            Limit=limit,
        )
        return [
            (item["pk"]["S"].removeprefix("SUB#"), from_iso(item["renewAt"]["S"]))
            for item in answer.get("Items", [])
        ]

    def lease(
        self, subscription_id: str, seen: datetime, until: datetime, now: datetime
    ) -> Subscription | None:
        """Move renewAt from `seen` to `until` in one conditional UpdateItem; None if it had
        moved (another dispatcher won, or the subscription changed)."""
        answer = self._db.call_if(
            "update_item",
            TableName=self._table,
            Key=_sub_key(subscription_id),
            UpdateExpression="SET renewAt = :until, #v = #v + :one, updatedAt = :now",
            ConditionExpression="renewAt = :seen AND #s IN (:active, :past_due)",
            ExpressionAttributeNames={"#v": "version", "#s": "status"},
            ExpressionAttributeValues={
                ":until": {"S": iso(until)},
                ":seen": {"S": iso(seen)},
                ":now": {"S": iso(now)},
                ":one": {"N": "1"},
                ":active": {"S": _CHARGEABLE[0]},
                ":past_due": {"S": _CHARGEABLE[1]},
            },
            ReturnValues="ALL_NEW",
        )
        if answer is None:
            return None
        return subscription_from_item(from_attributes(answer["Attributes"]))

    def get_claim(self, subscription_id: str, cycle: int, attempt: int) -> CycleClaim | None:
        """The claim on an attempt of a cycle, or None."""
        answer = self._db.call(
            "get_item",
            TableName=self._table,
            Key=_claim_key(subscription_id, cycle, attempt),
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return claim_from_item(from_attributes(item)) if item else None

    def claim(self, subscription: Subscription, claim: CycleClaim) -> None:
        """Write the claim only if the subscription's version is the one read (StaleStateError)
        and no claim exists for this attempt (DuplicateKeyError "claim")."""
        items = [
            {
                "ConditionCheck": {
                    "TableName": self._table,
                    "Key": _sub_key(subscription.id),
                    "ConditionExpression": "#v = :version",
                    "ExpressionAttributeNames": {"#v": "version"},
                    "ExpressionAttributeValues": {":version": {"N": str(subscription.version)}},
                }
            },
            self._put_new(claim_to_item(claim)),
        ]
        self._db.call("transact_write_items", ["subscription", "claim"], TransactItems=items)

    def record(
        self, current: Subscription, updated: Subscription, claim: CycleClaim
    ) -> Subscription:
        """The attempt's outcome on its claim and the subscription, in one transaction."""
        stored = replace(updated, version=current.version + 1)
        items = [
            self._put_versioned(current, stored),
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_attributes(claim_to_item(claim)),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
        self._db.call("transact_write_items", ["subscription", "subscription"], TransactItems=items)
        return stored

    def events_published(self, claim: CycleClaim) -> None:
        """Forget the claim's pending events once they reached the bus."""
        self._db.call(
            "update_item",
            TableName=self._table,
            Key=_claim_key(claim.subscription_id, claim.cycle, claim.attempt),
            UpdateExpression="REMOVE pendingEvents, publishUntil",
        )

    def take_publishing(self, claim: CycleClaim, now: datetime, until: datetime) -> bool:
        """Take over publishing the claim's pending events if its publisher's time ran out."""
        answer = self._db.call_if(
            "update_item",
            TableName=self._table,
            Key=_claim_key(claim.subscription_id, claim.cycle, claim.attempt),
            UpdateExpression="SET publishUntil = :until",
            ConditionExpression=(
                "attribute_exists(pendingEvents) AND "
                "(attribute_not_exists(publishUntil) OR publishUntil <= :now)"
            ),
            ExpressionAttributeValues={":until": {"S": iso(until)}, ":now": {"S": iso(now)}},
        )
        return answer is not None
