"""The renewal use case on in-memory fakes: the dunning ladder, the final action, and events that
survive a lost publish (same ids, published once the writer's time is up)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from payments.charges.model import CaptureMode, Charge, ChargeError, ChargeStatus
from payments.charges.requests import ChargeRequest
from payments.errors import DuplicateKeyError, EventPublishError, StaleStateError
from payments.shared.deadline import Deadline
from payments.shared.events import DomainEvent
from payments.subscriptions.calendar import BillingInterval, Interval
from payments.subscriptions.model import (
    CycleClaim,
    FinalAction,
    RenewalMessage,
    Subscription,
    SubscriptionStatus,
)
from payments.subscriptions.policy import RenewalPolicy
from payments.subscriptions.renewals import Renewals

T0 = datetime(2027, 1, 31, 9, tzinfo=UTC)
SUB_ID = "sub_" + "1" * 32


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeSubStore:
    """Version-checked subscriptions and write-once claims, under a lock."""

    def __init__(self, sub: Subscription) -> None:
        self.subs = {sub.id: sub}
        self.claims: dict[tuple[str, int, int], CycleClaim] = {}
        self._lock = threading.Lock()

    def get(self, subscription_id: str) -> Subscription | None:
        return self.subs.get(subscription_id)

    def get_claim(self, sub_id: str, cycle: int, attempt: int) -> CycleClaim | None:
        return self.claims.get((sub_id, cycle, attempt))

    def claim(self, subscription: Subscription, claim: CycleClaim) -> None:
        with self._lock:
            if self.subs[subscription.id].version != subscription.version:
                raise StaleStateError("changed")
            key = (claim.subscription_id, claim.cycle, claim.attempt)
            if key in self.claims:
                raise DuplicateKeyError("taken", "claim")
            self.claims[key] = claim

    def record(
        self, current: Subscription, updated: Subscription, claim: CycleClaim
    ) -> Subscription:
        with self._lock:
            if self.subs[current.id].version != current.version:
                raise StaleStateError("changed")
            stored = replace(updated, version=current.version + 1)
            self.subs[current.id] = stored
            self.claims[(claim.subscription_id, claim.cycle, claim.attempt)] = claim
            return stored

    def events_published(self, claim: CycleClaim) -> None:
        key = (claim.subscription_id, claim.cycle, claim.attempt)
        self.claims[key] = replace(self.claims[key], pending_events=(), publish_until=None)

    def take_publishing(self, claim: CycleClaim, now: datetime, until: datetime) -> bool:
        with self._lock:
            key = (claim.subscription_id, claim.cycle, claim.attempt)
            stored = self.claims[key]
            if not stored.pending_events or (stored.publish_until and stored.publish_until > now):
                return False
            self.claims[key] = replace(stored, publish_until=until)
            return True


@dataclass
class ScriptedCharges:
    """Answers each new key with the next scripted status; replays answer the same charge."""

    script: list[tuple[ChargeStatus, str | None]]
    by_key: dict[str, Charge] = field(default_factory=dict)
    requests: list[ChargeRequest] = field(default_factory=list)

    def create_charge(self, request: ChargeRequest, key: str, deadline: Deadline) -> Any:
        if key not in self.by_key:
            self.requests.append(request)
            status, code = self.script.pop(0)
            category = {"484": "soft", "493": "soft", "483": "hard"}.get(code or "", "other")
            self.by_key[key] = Charge(
                id=f"ch_{len(self.by_key)}",
                invoice_id="000000001",
                status=status,
                amount=request.amount,
                currency=request.currency,
                account_id=request.account_id,
                card_id=request.card_id,
                description=request.description,
                capture=CaptureMode.AUTO,
                recurrent=request.recurrent,
                language="rus",
                idempotency_key=key,
                request_hash="h",
                secret_hash_digest="d",
                created_at=T0,
                updated_at=T0,
                error=ChargeError(code, "declined", category) if code else None,
            )
        return type("Result", (), {"charge": self.by_key[key]})()


@dataclass
class Bus:
    published: list[DomainEvent] = field(default_factory=list)
    fail_next: bool = False

    def publish(self, events: Sequence[DomainEvent]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise EventPublishError("bus down")
        self.published.extend(events)


def subscription() -> Subscription:
    return Subscription(
        id=SUB_ID,
        account_id="customer-1",
        card_id="c0000000-0000-4000-8000-000000000001",
        amount=Decimal("990.00"),
        currency="KZT",
        description="Plan",
        interval=BillingInterval(Interval.MONTH, 1),
        anchor=T0,
        status=SubscriptionStatus.ACTIVE,
        idempotency_key="k",
        request_hash="h",
        created_at=T0,
        updated_at=T0,
        renew_at=T0,
    )


def make(script: list[tuple[ChargeStatus, str | None]], final: FinalAction = FinalAction.UNPAID):
    clock = Clock()
    store = FakeSubStore(subscription())
    bus = Bus()
    renewals = Renewals(
        store=store,  # type: ignore[arg-type]
        queue=None,  # type: ignore[arg-type]
        charges=ScriptedCharges(script),
        events=bus,
        policy=RenewalPolicy(final_action=final),
        clock=clock,
    )
    return renewals, store, bus, clock


def renew_current(renewals: Renewals, store: FakeSubStore) -> str:
    sub = store.subs[SUB_ID]
    message = RenewalMessage(SUB_ID, sub.cycle, sub.attempt, sub.due_at())
    return renewals.renew(message, Deadline.after(10)).outcome


DECLINE = (ChargeStatus.DECLINED, "484")


def test_soft_declines_climb_the_ladder_then_unpaid() -> None:
    # Given a card that soft-declines (484) every attempt, and the final action UNPAID
    renewals, store, bus, clock = make([DECLINE] * 4)
    outcomes = []
    # When each renewal runs as it falls due
    for _ in range(4):
        clock.now = store.subs[SUB_ID].renew_at or clock.now
        outcomes.append(renew_current(renewals, store))
    # Then retries were scheduled +1d, +3d, +5d after each decline, then the ladder ran out
    assert outcomes == ["declined", "declined", "declined", "unpaid"]
    sub = store.subs[SUB_ID]
    assert sub.status is SubscriptionStatus.UNPAID
    assert sub.renew_at is None
    assert clock.now == T0 + timedelta(days=9)
    # And each step was told once, with its own event id
    assert [e.data["reason"] for e in bus.published] == ["retrying"] * 3 + ["retries_exhausted"]
    assert len({e.id for e in bus.published}) == 4


def test_the_final_action_can_cancel() -> None:
    # Given a card that soft-declines every attempt, and the final action CANCELLED
    renewals, store, bus, clock = make([DECLINE] * 4, FinalAction.CANCELLED)
    # When the ladder runs out
    for _ in range(4):
        clock.now = store.subs[SUB_ID].renew_at or clock.now
        renew_current(renewals, store)
    # Then the subscription is CANCELLED and subscription.canceled was told last
    assert store.subs[SUB_ID].status is SubscriptionStatus.CANCELLED
    assert bus.published[-1].id == f"subscription.canceled:{SUB_ID}"


def test_a_hard_decline_stops_retries() -> None:
    # Given a stolen card (483, a hard decline) / When the renewal runs
    renewals, store, _bus, _clock = make([(ChargeStatus.DECLINED, "483")])
    assert renew_current(renewals, store) == "past_due"
    # Then it is PAST_DUE waiting for a new card, with no retry scheduled
    sub = store.subs[SUB_ID]
    assert (sub.status, sub.past_due_reason, sub.renew_at) == (
        SubscriptionStatus.PAST_DUE,
        "card_required",
        None,
    )


def test_success_after_a_decline_is_active_again_with_the_next_cycle_due() -> None:
    # Given a first attempt soft-declined
    renewals, store, bus, clock = make([DECLINE, (ChargeStatus.CAPTURED, None)])
    renew_current(renewals, store)
    # When the retry is captured
    clock.now = store.subs[SUB_ID].renew_at or clock.now
    assert renew_current(renewals, store) == "paid"
    # Then the subscription is ACTIVE on the next cycle, its failures cleared
    sub = store.subs[SUB_ID]
    assert (sub.status, sub.cycle, sub.attempt, sub.failures) == (
        SubscriptionStatus.ACTIVE,
        1,
        0,
        0,
    )
    # And the next renewal is due on the anchor's clamped day, and cycle 0 was told renewed
    assert sub.renew_at == datetime(2027, 2, 28, 9, tzinfo=UTC)
    assert bus.published[-1].id == f"subscription.renewed:{SUB_ID}#0"


def test_a_lost_publish_is_redone_by_a_redelivery_with_the_same_id_once() -> None:
    # Given a renewal that will be paid, and a bus that refuses the first publish
    renewals, store, bus, clock = make([(ChargeStatus.CAPTURED, None)])
    sub = store.subs[SUB_ID]
    message = RenewalMessage(SUB_ID, 0, 0, sub.due_at())
    bus.fail_next = True
    # When it runs / Then the outcome was written (next cycle) but its event was lost
    with pytest.raises(EventPublishError):
        renewals.renew(message, Deadline.after(10))
    assert store.subs[SUB_ID].cycle == 1
    assert bus.published == []
    # When SQS redelivers at once / Then the writer's publish time is not up: nothing yet
    assert renewals.renew(message, Deadline.after(10)).outcome == "duplicate"
    assert bus.published == []
    # When it redelivers after that time, twice / Then the event goes out (same id), only once
    clock.now += timedelta(minutes=3)
    renewals.renew(message, Deadline.after(10))
    renewals.renew(message, Deadline.after(10))
    assert [e.id for e in bus.published] == [f"subscription.renewed:{SUB_ID}#0"]


def test_a_pending_charge_is_looked_at_again_without_a_new_attempt() -> None:
    # Given the renewal's charge waits for 3DS / When the renewal runs
    renewals, store, bus, _clock = make([(ChargeStatus.REQUIRES_3DS, None)])
    assert renew_current(renewals, store) == "requires_action"
    # Then the same cycle and attempt are looked at again in 15 minutes, and nothing is told yet
    sub = store.subs[SUB_ID]
    assert (sub.cycle, sub.attempt) == (0, 0)
    assert sub.renew_at == T0 + timedelta(minutes=15)
    assert bus.published == []
