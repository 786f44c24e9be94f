"""The one way a charge changes: state-machine steps and data, applied by one conditional write.

Every writer (the API, the 3-D Secure page and return, postLink, the reconciler) goes through
`ChargeTransitions`, so the state machine, the history, the reconciler's schedule and telemetry
are applied the same way whichever path moves a charge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from payments.charges.model import (
    CHECK_LADDER,
    PROCESSING_SAFE_AGE,
    THREE_DS_OPEN,
    Charge,
    ChargeError,
    ChargeStatus,
    EpayRef,
    HistoryEntry,
    S,
    Source,
    ThreeDSData,
    can_transition,
)
from payments.errors import InvalidTransitionError, NotFoundError, StaleStateError

if TYPE_CHECKING:
    from payments.charges.ports import ChargeStore, Telemetry


@dataclass(frozen=True)
class Step:
    """One transition to apply, with what explains it in the history."""

    target: ChargeStatus
    detail: str = ""


class _Keep:
    """Marks an optional value as unchanged (None is a value: "no next check", "no claim")."""


KEEP: Final = _Keep()


@dataclass(frozen=True)
class Change:
    """What one write does to a charge: steps through the state machine, and data."""

    source: Source
    steps: tuple[Step, ...] = ()
    epay: EpayRef | None = None
    error: ChargeError | None = None
    three_ds: ThreeDSData | None = None
    captured: Decimal | None = None
    capture_pending: bool | None = None
    capture_claimed_at: datetime | _Keep | None = KEEP
    next_check_at: datetime | _Keep | None = KEEP
    check_attempts: int | None = None
    refunded: Decimal | None = None  # the new refunded amount
    refund_reserved: Decimal | None = None  # the new reserved amount
    void_pending: bool | None = None


# Writes a planned change (current, updated, history entries) and returns the stored charge:
# the store's own transition, or one that adds other items to the same transaction.
Writer = Callable[[Charge, Charge, list[HistoryEntry]], Charge]


class ChargeTransitions:
    """Apply a change through the state machine and write it once, conditionally."""

    def __init__(
        self, *, store: ChargeStore, telemetry: Telemetry, clock: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._clock = clock

    def now(self) -> datetime:
        """The clock every write of this writer is stamped with."""
        return self._clock()

    def apply(self, charge: Charge, change: Change, write: Writer | None = None) -> Charge:
        """Write the change if nobody changed the charge since it was read; StaleStateError if
        somebody did. A change of status starts a fresh reconciler schedule unless one is given.
        `write` (default: the store's transition) may add its own items to the same write.
        """
        now = self._clock()
        entries: list[HistoryEntry] = []
        status = charge.status
        for step in change.steps:
            if not can_transition(status, step.target):
                raise InvalidTransitionError(f"{status.value} cannot become {step.target.value}")
            entries.append(HistoryEntry(status, step.target, now, change.source, step.detail))
            status = step.target
        updated = replace(
            charge,
            status=status,
            updated_at=now,
            epay=_merge_epay(charge.epay, change.epay),
            error=change.error or charge.error,
            three_ds=change.three_ds or charge.three_ds,
            captured_amount=_either(change.captured, charge.captured_amount),
            capture_pending=_either(change.capture_pending, charge.capture_pending),
            capture_claimed_at=(
                charge.capture_claimed_at
                if isinstance(change.capture_claimed_at, _Keep)
                else change.capture_claimed_at
            ),
            refunded_amount=_either(change.refunded, charge.refunded_amount),
            refund_reserved=_either(change.refund_reserved, charge.refund_reserved),
            void_pending=_either(change.void_pending, charge.void_pending),
        )
        if updated.three_ds is not None and updated.status not in THREE_DS_OPEN:
            # The 3-D Secure step is over: keep nothing that could replay or continue it.
            updated = replace(updated, three_ds=updated.three_ds.scrubbed())
        updated = _schedule(updated, now, bool(entries), change)
        stored = (write or self._store.transition)(charge, updated, entries)
        for entry in entries:
            self._telemetry.transitioned(
                replace(stored, status=entry.to_status), entry.from_status, change.source
            )
        if entries:
            self._telemetry.outcome(stored)
        return stored

    def move(self, charge: Charge, change: Change) -> Charge:
        """`apply`, except that when another path moved the charge first, its state wins and is
        returned (the signal that lost the race changes nothing)."""
        try:
            return self.apply(charge, change)
        except StaleStateError:
            return self.latest(charge)

    def latest(self, charge: Charge) -> Charge:
        """The charge as stored now (after a lost race)."""
        stored = self._store.get(charge.id)
        if stored is None:
            raise NotFoundError("no such charge")
        return stored


def _either[T](new: T | None, old: T) -> T:
    return old if new is None else new


def _schedule(charge: Charge, now: datetime, status_changed: bool, change: Change) -> Charge:
    if not isinstance(change.next_check_at, _Keep):
        attempts = charge.check_attempts if change.check_attempts is None else change.check_attempts
        return replace(charge, next_check_at=change.next_check_at, check_attempts=attempts)
    if status_changed:
        # A new state starts a fresh schedule; otherwise keep the reconciler's ladder.
        return replace(charge, next_check_at=first_check(charge, now), check_attempts=0)
    if charge.next_check_at is None:
        return replace(charge, next_check_at=first_check(charge, now))
    return charge


def _merge_epay(old: EpayRef, new: EpayRef | None) -> EpayRef:
    if new is None:
        return old
    return EpayRef(
        transaction_id=new.transaction_id or old.transaction_id,
        reference=new.reference or old.reference,
        approval_code=new.approval_code or old.approval_code,
        card_mask=new.card_mask or old.card_mask,
    )


def first_check(charge: Charge, now: datetime) -> datetime | None:
    """When the reconciler should first look at a charge in this state (None: never)."""
    if charge.status is S.PROCESSING:
        return charge.created_at + PROCESSING_SAFE_AGE
    if charge.status is S.UNKNOWN:
        return now + CHECK_LADDER[0]
    if charge.status is S.REQUIRES_3DS:
        expiry = charge.three_ds.token_expires_at if charge.three_ds else now
        return expiry + CHECK_LADDER[0]
    if charge.status is S.AUTHORIZED and (charge.capture_pending or charge.void_pending):
        return now + CHECK_LADDER[0]
    return None
