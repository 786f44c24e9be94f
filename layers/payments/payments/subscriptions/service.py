"""Subscriptions: recurring charges of a saved card, one charge per billing cycle.

Times are UTC. Cycle `n` of a subscription is due at `anchor + n * interval` (cycle 0 at its
start); months and years are counted from the anchor, and a day the month does not have is
clamped to the month's last day (anchored on 31 January: 28/29 February, 31 March, 30 April, ...),
so clamping never drifts.

The use cases see no boto3, SQS or EventBridge: a SubscriptionStore, a RenewalQueue, a
ChargeCreator (ChargeService.create_charge) and DomainEvents, all small Protocols.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from payments.charges.ports import CardRules
from payments.errors import (
    ConflictError,
    DuplicateKeyError,
    InvalidTransitionError,
    NotFoundError,
    StaleStateError,
)
from payments.shared.clock import utc_now
from payments.shared.idempotency import create_once, fingerprint
from payments.subscriptions.events import (
    CANCEL_REQUESTED,
)
from payments.subscriptions.model import (
    CHARGEABLE,
    SS,
    PastDueReason,
    Subscription,
    is_subscription_id,
)
from payments.subscriptions.ports import SubscriptionStore
from payments.subscriptions.requests import (
    SubscriptionRequest,
    SubscriptionUpdate,
    decode_cursor,
    encode_cursor,
)

# --- the API use cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """The subscription a create produced, and whether it was a replay."""

    subscription: Subscription
    replayed: bool


class Subscriptions:
    """Create, read, list, update, pause, resume and cancel subscriptions."""

    def __init__(
        self,
        *,
        store: SubscriptionStore,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = lambda: "sub_" + secrets.token_hex(16),
        cards: CardRules | None = None,
    ) -> None:
        self._cards = cards
        self._store = store
        self._clock = clock
        self._new_id = new_id

    def now(self) -> datetime:
        """The injected clock (handlers validate startAt against it)."""
        return self._clock()

    def create(self, request: SubscriptionRequest, idempotency_key: str) -> Created:
        """Create once per Idempotency-Key; cycle 0 is due at startAt (default: now)."""
        request_hash = fingerprint(request.fingerprint_fields())
        once = create_once(
            idempotency_key,
            request_hash,
            lookup=self._store.get_key,
            create=lambda: self._insert(request, idempotency_key, request_hash),
            replay=lambda record: self.get(record.resource_id),
        )
        return Created(once.value, replayed=once.replayed)

    def _insert(
        self, request: SubscriptionRequest, idempotency_key: str, request_hash: str
    ) -> Subscription | None:
        """Write the new subscription; None when the idempotency key was taken meanwhile. A card
        known to be removed, or another account's, is refused before anything is written."""
        if self._cards is not None:
            self._cards.check(request.account_id, request.card_id)
        now = self._clock()
        anchor = request.start_at or now.replace(microsecond=now.microsecond // 1000 * 1000)
        sub = Subscription(
            id=self._new_id(),
            account_id=request.account_id,
            card_id=request.card_id,
            amount=request.amount,
            currency=request.currency,
            description=request.description,
            interval=request.interval,
            anchor=anchor,
            status=SS.ACTIVE,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            created_at=now,
            updated_at=now,
            renew_at=anchor,
            payer=request.payer,
        )
        try:
            self._store.create(sub)
        except DuplicateKeyError:
            return None
        return sub

    def get(self, subscription_id: str) -> Subscription:
        """The stored subscription, or NotFoundError."""
        sub = self._store.get(subscription_id) if is_subscription_id(subscription_id) else None
        if sub is None:
            raise NotFoundError("no such subscription")
        return sub

    def list_for_account(
        self, account_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Subscription], str | None]:
        """One page of an account's subscriptions (oldest first) and the next page's cursor."""
        after = decode_cursor(cursor) if cursor else None
        items, last = self._store.list_by_account(account_id, limit, after)
        return items, encode_cursor(last) if last else None

    def cancel(self, subscription_id: str) -> Subscription:
        """Cancel now: no further charge is dispatched; an attempt already charging completes."""
        return self._change(subscription_id, self._cancel)

    def pause(self, subscription_id: str) -> Subscription:
        """Stop dispatching until resumed."""
        return self._change(subscription_id, self._pause)

    def resume(self, subscription_id: str) -> Subscription:
        """Continue with the earliest cycle whose period has not ended (missed ones are skipped)."""
        return self._change(subscription_id, self._resume)

    def charging_card(self, account_id: str, card_id: str) -> list[str]:
        """Ids of the account's subscriptions that still charge a card (active, past due or
        paused: not cancelled, not given up as unpaid)."""
        ids: list[str] = []
        after: str | None = None
        while True:
            page, after = self._store.list_by_account(account_id, 100, after)
            ids += [
                sub.id
                for sub in page
                if sub.card_id == card_id and sub.status in {SS.ACTIVE, SS.PAST_DUE, SS.PAUSED}
            ]
            if after is None:
                return ids

    def update(self, subscription_id: str, change: SubscriptionUpdate) -> Subscription:
        """Change the card (from the next attempt) or the amount (from the next cycle). The new
        card must not be one known to be removed, or another account's."""
        if change.card_id is not None and self._cards is not None:
            self._cards.check(self.get(subscription_id).account_id, change.card_id)
        return self._change(subscription_id, lambda sub, now: self._update(sub, change, now))

    # -- transitions, each applied with one conditional write (retried on a lost race) --

    def _change(
        self,
        subscription_id: str,
        decide: Callable[[Subscription, datetime], Subscription],
    ) -> Subscription:
        for _attempt in range(5):
            sub = self.get(subscription_id)
            now = self._clock()
            updated = decide(sub, now)
            if updated is sub:
                return sub
            try:
                return self._store.save(sub, replace(updated, updated_at=now))
            except StaleStateError:
                continue
        raise ConflictError("the subscription is changing concurrently, retry")

    @staticmethod
    def _cancel(sub: Subscription, now: datetime) -> Subscription:
        if sub.status is SS.CANCELLED:
            return sub
        # subscription.canceled is told from this write by the table's stream (the outbox).
        cancelled = replace(
            sub, status=SS.CANCELLED, renew_at=None, canceled_at=now, cancel_reason=CANCEL_REQUESTED
        )
        return cancelled

    @staticmethod
    def _pause(sub: Subscription, now: datetime) -> Subscription:
        if sub.status is SS.PAUSED:
            return sub
        if sub.status not in CHARGEABLE:
            raise InvalidTransitionError(f"a {sub.status.value} subscription cannot be paused")
        return replace(sub, status=SS.PAUSED, renew_at=None, paused_at=now)

    @staticmethod
    def _resume(sub: Subscription, now: datetime) -> Subscription:
        if sub.status in CHARGEABLE:
            return sub
        if sub.status is not SS.PAUSED:
            raise InvalidTransitionError(f"a {sub.status.value} subscription cannot be resumed")
        cycle = sub.cycle
        while sub.due_at(cycle + 1) <= now:
            cycle += 1
        resumed = replace(sub, status=SS.ACTIVE, paused_at=None, past_due_reason=None)
        if cycle != sub.cycle:
            amount = sub.pending_amount or sub.amount
            resumed = replace(
                resumed, cycle=cycle, attempt=0, failures=0, amount=amount, pending_amount=None
            )
        return replace(resumed, renew_at=max(resumed.due_at(), now))

    @staticmethod
    def _update(sub: Subscription, change: SubscriptionUpdate, now: datetime) -> Subscription:
        if sub.status is SS.CANCELLED:
            raise InvalidTransitionError("a CANCELLED subscription cannot be changed")
        updated = sub
        if change.description is not None:
            updated = replace(updated, description=change.description)
        if change.amount is not None:
            if sub.due_at() <= now:  # the current cycle is due or being charged: keep its amount
                updated = replace(updated, pending_amount=change.amount)
            else:
                updated = replace(updated, amount=change.amount, pending_amount=None)
        if change.card_id is not None:
            updated = replace(updated, card_id=change.card_id)
            if sub.status is SS.UNPAID or sub.past_due_reason is PastDueReason.CARD_REQUIRED:
                # A new card for an unpaid cycle: try it now, with a fresh retry ladder.
                updated = replace(
                    updated,
                    status=SS.PAST_DUE,
                    past_due_reason=PastDueReason.RETRYING,
                    failures=0,
                    renew_at=now,
                )
        return updated
