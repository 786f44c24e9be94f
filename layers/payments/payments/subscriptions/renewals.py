"""Renewals: the dispatcher enqueues due cycles; the worker charges each cycle once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from payments.charges.declines import DeclineCategory
from payments.charges.events import renewal_key
from payments.charges.model import Charge, ChargeError
from payments.charges.model import ChargeStatus as C
from payments.errors import (
    CardAccountMismatchError,
    CardRemovedError,
    ConflictError,
    DuplicateKeyError,
    GatewayUnavailableError,
    NotFoundError,
    StaleStateError,
)
from payments.shared.clock import iso, utc_now
from payments.shared.deadline import Deadline
from payments.shared.events import DomainEvent, DomainEvents
from payments.subscriptions.events import (
    SUBSCRIPTION_CANCELED,
    SUBSCRIPTION_PAST_DUE,
    SUBSCRIPTION_RENEWED,
    _event,
)
from payments.subscriptions.model import (
    CHARGEABLE,
    FINAL_CLAIM_STATES,
    RENEWAL_SHARDS,
    SS,
    ClaimState,
    CycleClaim,
    FinalAction,
    PastDueReason,
    RenewalMessage,
    RenewalOutcome,
    Subscription,
)
from payments.subscriptions.policy import RenewalPolicy
from payments.subscriptions.ports import ChargeCreator, RenewalQueue, SubscriptionStore

MIN_SECONDS_PER_PAGE = 5.0
DISPATCH_PAGE = 100


# --- dispatch and renewal -------------------------------------------------------------------------


@dataclass
class DispatchReport:
    """What one dispatcher run did."""

    enqueued: int = 0
    skipped: int = 0
    shards: int = 0


@dataclass(frozen=True)
class RenewalResult:
    """What a renewal message did: paid, declined, past_due, pending, requires_action, outage,
    duplicate or stale (nothing to do)."""

    outcome: RenewalOutcome
    charge_id: str | None = None


class Renewals:
    """Finds due cycles (dispatch) and charges each attempt once (renew)."""

    def __init__(
        self,
        *,
        store: SubscriptionStore,
        queue: RenewalQueue,
        charges: ChargeCreator,
        events: DomainEvents,
        policy: RenewalPolicy,
        clock: Callable[[], datetime] = utc_now,
        shards: int = RENEWAL_SHARDS,
        parallelism: int = RENEWAL_SHARDS,
        page_size: int = DISPATCH_PAGE,
    ) -> None:
        self._store = store
        self._queue = queue
        self._charges = charges
        self._events = events
        self._policy = policy
        self._clock = clock
        self._shards = shards
        self._parallelism = max(1, parallelism)
        self._page = page_size

    # -- dispatch --

    def dispatch(self, deadline: Deadline) -> DispatchReport:
        """Enqueue every cycle due now, once: only the writer that moved renewAt sends."""
        now = self._clock()
        report = DispatchReport(shards=self._shards)
        with ThreadPoolExecutor(max_workers=self._parallelism) as pool:
            for enqueued, skipped in pool.map(
                lambda shard: self.dispatch_shard(shard, now, deadline), range(self._shards)
            ):
                report.enqueued += enqueued
                report.skipped += skipped
        return report

    def dispatch_shard(self, shard: int, now: datetime, deadline: Deadline) -> tuple[int, int]:
        """Lease and enqueue one shard's due subscriptions; (enqueued, skipped)."""
        enqueued = skipped = 0
        seen: set[str] = set()
        while deadline.remaining() > MIN_SECONDS_PER_PAGE:
            page = [d for d in self._store.due(shard, now, self._page) if d[0] not in seen]
            if not page:
                break
            messages: list[RenewalMessage] = []
            for sub_id, renew_at in page:
                seen.add(sub_id)
                leased = self._store.lease(sub_id, renew_at, now + self._policy.lease, now)
                if leased is None:
                    skipped += 1
                    continue
                messages.append(
                    RenewalMessage(leased.id, leased.cycle, leased.attempt, leased.due_at())
                )
            if messages:
                self._queue.send(messages)
                enqueued += len(messages)
        return enqueued, skipped

    # -- renew --

    def renew(self, message: RenewalMessage, deadline: Deadline) -> RenewalResult:
        """Charge one attempt of one cycle once, whoever delivers the message how often."""
        claim = self._store.get_claim(message.subscription_id, message.cycle, message.attempt)
        if claim is None:
            claim = self._claim(message)
            if claim is None:
                return RenewalResult(RenewalOutcome.STALE)
        if claim.state in FINAL_CLAIM_STATES:
            self._flush_stranded(claim)
            return RenewalResult(RenewalOutcome.DUPLICATE, claim.charge_id)
        key = renewal_key(message.subscription_id, message.cycle, message.attempt)
        charge: Charge | None
        refused: ChargeError | None = None
        try:
            charge = self._charges.create_charge(claim.charge_request(), key, deadline).charge
        except GatewayUnavailableError:
            charge = None  # ePay unreachable: the charge is FAILED, nothing was taken
        except (CardRemovedError, CardAccountMismatchError) as exc:
            # The card was removed (or is another account's): refused before any charge was
            # written, so it fails safe as a hard decline until a new card is set (PATCH).
            charge = None
            refused = ChargeError(exc.code, exc.message, DeclineCategory.HARD.value)
        return self._record(message, claim, charge, refused)

    def _claim(self, message: RenewalMessage) -> CycleClaim | None:
        for _attempt in range(5):
            sub = self._store.get(message.subscription_id)
            if (
                sub is None
                or sub.status not in CHARGEABLE
                or (sub.cycle, sub.attempt) != (message.cycle, message.attempt)
            ):
                return None
            claim = CycleClaim(
                subscription_id=sub.id,
                cycle=sub.cycle,
                attempt=sub.attempt,
                amount=sub.amount,
                currency=sub.currency,
                card_id=sub.card_id,
                account_id=sub.account_id,
                description=sub.description,
                claimed_at=self._clock(),
                payer=sub.payer,
            )
            try:
                self._store.claim(sub, claim)
            except DuplicateKeyError:
                return self._store.get_claim(sub.id, sub.cycle, sub.attempt)
            except StaleStateError:
                continue
            return claim
        raise ConflictError("the subscription is changing concurrently, retry")

    def _record(
        self,
        message: RenewalMessage,
        claim: CycleClaim,
        charge: Charge | None,
        refused: ChargeError | None = None,
    ) -> RenewalResult:
        charge_id = charge.id if charge is not None else None
        for _attempt in range(5):
            sub = self._store.get(message.subscription_id)
            if sub is None:
                raise NotFoundError("the subscription vanished")
            if (sub.cycle, sub.attempt) != (message.cycle, message.attempt):
                # Someone recorded this attempt already (a duplicate), or the subscription moved
                # on (resumed past this cycle) while it was charging: keep the charge on the claim.
                latest = self._store.get_claim(sub.id, message.cycle, message.attempt) or claim
                if latest.state not in FINAL_CLAIM_STATES:
                    orphan = replace(latest, state=ClaimState.ORPHANED, charge_id=charge_id)
                    self._store.record(sub, sub, orphan)
                    return RenewalResult(RenewalOutcome.STALE, charge_id)
                self._flush_stranded(latest)
                return RenewalResult(RenewalOutcome.DUPLICATE, latest.charge_id)
            now = self._clock()
            updated, state, outcome, events = self._decide(sub, charge, now, refused)
            pending = tuple(e.to_json() for e in events)
            recorded = replace(
                claim,
                state=state,
                charge_id=charge_id,
                pending_events=pending,
                publish_until=now + self._policy.publish_lease if pending else None,
            )
            try:
                self._store.record(sub, replace(updated, updated_at=now), recorded)
            except StaleStateError:
                continue
            self._flush(recorded)
            return RenewalResult(outcome, charge_id)
        raise ConflictError("the subscription is changing concurrently, retry")

    def _flush(self, claim: CycleClaim) -> None:
        """Publish a recorded attempt's events, then forget them."""
        if not claim.pending_events:
            return
        self._events.publish([DomainEvent.from_json(raw) for raw in claim.pending_events])
        self._store.events_published(claim)

    def _flush_stranded(self, claim: CycleClaim) -> None:
        """A redelivery publishes events whose writer died before publishing them (same ids),
        only once that writer's time is up and only if it wins the takeover."""
        if not claim.pending_events:
            return
        now = self._clock()
        if claim.publish_until is not None and claim.publish_until > now:
            return
        if self._store.take_publishing(claim, now, now + self._policy.publish_lease):
            self._flush(claim)

    def _decide(
        self,
        sub: Subscription,
        charge: Charge | None,
        now: datetime,
        refused: ChargeError | None = None,
    ) -> tuple[Subscription, ClaimState, RenewalOutcome, list[DomainEvent]]:
        """(the subscription after, the claim's state, the outcome, the events) of one attempt."""
        if refused is not None:
            return self._declined(sub, now, sub.amount, refused, None)
        chargeable = sub.status in CHARGEABLE
        if charge is None or charge.status is C.FAILED:
            # ePay could not be reached: nothing was charged. A new attempt (a new key: the
            # FAILED charge's key answers 503 forever), not counted as a decline.
            retry = now + self._policy.outage_retry
            return (
                replace(sub, attempt=sub.attempt + 1, renew_at=retry if chargeable else None),
                ClaimState.OUTAGE,
                RenewalOutcome.OUTAGE,
                [],
            )
        if charge.status in (C.CAPTURED, C.AUTHORIZED):
            return self._paid(sub, charge, now)
        if charge.status in (C.DECLINED, C.EXPIRED, C.CANCELLED):
            error = charge.error or ChargeError(
                charge.status.value.lower(), charge.status.value, DeclineCategory.OTHER.value
            )
            return self._declined(sub, now, charge.amount, error, charge.id)
        # REQUIRES_3DS (the customer must act), UNKNOWN or NEEDS_REVIEW (the reconciler or a
        # person settles it): look again later; the same key replays the same charge.
        delay = (
            self._policy.review_recheck
            if charge.status is C.NEEDS_REVIEW
            else self._policy.pending_recheck
        )
        waiting = charge.status is C.REQUIRES_3DS
        return (
            replace(sub, renew_at=now + delay if chargeable else None, last_charge_id=charge.id),
            ClaimState.REQUIRES_ACTION if waiting else ClaimState.PENDING,
            RenewalOutcome.REQUIRES_ACTION if waiting else RenewalOutcome.PENDING,
            [],
        )

    def _paid(
        self, sub: Subscription, charge: Charge, now: datetime
    ) -> tuple[Subscription, ClaimState, RenewalOutcome, list[DomainEvent]]:
        cycle = sub.cycle
        nxt = sub.cycle + 1
        status = SS.ACTIVE if sub.status in CHARGEABLE else sub.status
        advanced = replace(
            sub,
            status=status,
            cycle=nxt,
            attempt=0,
            failures=0,
            amount=sub.pending_amount or sub.amount,
            pending_amount=None,
            past_due_reason=None,
            paid_cycles=sub.paid_cycles + 1,
            last_charge_id=charge.id,
            renew_at=sub.due_at(nxt) if status is SS.ACTIVE else None,
        )
        event = _event(
            SUBSCRIPTION_RENEWED,
            f"{SUBSCRIPTION_RENEWED}:{sub.id}#{cycle}",
            advanced,
            now,
            amount=charge.amount,
            cycle=cycle,
            chargeId=charge.id,
            periodStart=iso(sub.due_at(cycle)),
            periodEnd=iso(sub.due_at(nxt)),
            nextChargeAt=iso(advanced.due_at()) if status is SS.ACTIVE else None,
        )
        return advanced, ClaimState.PAID, RenewalOutcome.PAID, [event]

    def _declined(
        self,
        sub: Subscription,
        now: datetime,
        amount: Decimal,
        error: ChargeError,
        charge_id: str | None,
    ) -> tuple[Subscription, ClaimState, RenewalOutcome, list[DomainEvent]]:
        category, code = error.category, error.code
        attempt = sub.attempt
        # A declined charge is the latest attempt's charge (a card refused before any charge
        # was written leaves the last one shown).
        after = replace(
            sub,
            attempt=attempt + 1,
            failures=sub.failures + 1,
            last_charge_id=charge_id or sub.last_charge_id,
        )
        if sub.status not in CHARGEABLE:  # paused or cancelled meanwhile: remember, do nothing
            return replace(after, renew_at=None), ClaimState.DECLINED, RenewalOutcome.DECLINED, []

        def past_due(updated: Subscription, reason: str, **extra: Any) -> DomainEvent:
            return _event(
                SUBSCRIPTION_PAST_DUE,
                f"{SUBSCRIPTION_PAST_DUE}:{sub.id}#{sub.cycle}#{attempt}",
                updated,
                now,
                amount=amount,
                cycle=sub.cycle,
                attempt=attempt,
                chargeId=charge_id,
                reason=reason,
                declineCode=code,
                declineCategory=category,
                **extra,
            )

        if category == DeclineCategory.HARD.value:
            hard = replace(
                after,
                status=SS.PAST_DUE,
                past_due_reason=PastDueReason.CARD_REQUIRED,
                renew_at=None,
            )
            return (
                hard,
                ClaimState.DECLINED,
                RenewalOutcome.PAST_DUE,
                [past_due(hard, "card_required")],
            )
        ladder = self._policy.ladder
        if after.failures <= len(ladder):
            retry_at = now + ladder[after.failures - 1]
            retrying = replace(
                after, status=SS.PAST_DUE, past_due_reason=PastDueReason.RETRYING, renew_at=retry_at
            )
            return (
                retrying,
                ClaimState.DECLINED,
                RenewalOutcome.DECLINED,
                [past_due(retrying, "retrying", nextRetryAt=iso(retry_at))],
            )
        if self._policy.final_action is FinalAction.CANCELLED:
            cancelled = replace(
                after,
                status=SS.CANCELLED,
                renew_at=None,
                canceled_at=now,
                cancel_reason="unpaid",
                past_due_reason=PastDueReason.RETRIES_EXHAUSTED,
            )
            event = _event(
                SUBSCRIPTION_CANCELED,
                f"{SUBSCRIPTION_CANCELED}:{sub.id}",
                cancelled,
                now,
                reason="unpaid",
                cycle=sub.cycle,
                chargeId=charge_id,
            )
            return cancelled, ClaimState.DECLINED, RenewalOutcome.CANCELLED, [event]
        unpaid = replace(
            after,
            status=SS.UNPAID,
            renew_at=None,
            past_due_reason=PastDueReason.RETRIES_EXHAUSTED,
        )
        return (
            unpaid,
            ClaimState.DECLINED,
            RenewalOutcome.UNPAID,
            [past_due(unpaid, "retries_exhausted")],
        )
