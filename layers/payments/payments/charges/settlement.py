"""Settling a charge from what ePay says: the one mapping of ePay's statuses to ours.

Every signal that can settle a charge (the synchronous answer, the 3-D Secure return, postLink
and the reconciler) ends here, so they share one state machine and one reading of ePay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from payments.charges.model import (
    CaptureMode,
    Charge,
    ChargeError,
    ChargeStatus,
    EpayRef,
    S,
    Source,
    can_transition,
    capture_in_flight,
)
from payments.charges.payment_gateway import (
    GatewayStatus,
    PaymentGateway,
    StatusResult,
    TransactionStatus,
)
from payments.charges.ports import ChargeStore, Telemetry
from payments.charges.transitions import KEEP, Change, ChargeTransitions, Step
from payments.errors import (
    GatewayError,
    GatewayRejectedError,
    InvalidTransitionError,
    NotFoundError,
    StaleStateError,
)
from payments.shared.deadline import Deadline

G = GatewayStatus
# What each final status at ePay makes of a charge (epay-api.md section 4).
SETTLES_AS: Mapping[GatewayStatus, ChargeStatus] = MappingProxyType(
    {
        G.AUTH: S.AUTHORIZED,
        G.CHARGE: S.CAPTURED,
        G.CANCEL: S.CANCELLED,
        G.CANCEL_OLD: S.EXPIRED,
        G.REFUND: S.REFUNDED,
        G.REJECT: S.DECLINED,
        G.FAILED: S.DECLINED,
    }
)
# The statuses whose recording belongs to the path holding a capture claim.
_CAPTURE_OUTCOMES = frozenset({S.AUTHORIZED, S.CAPTURED})
# How long the merchant's create request waits for another path's capture of its charge.
CAPTURE_WAIT_SECONDS = 3.0
CAPTURE_POLL_SECONDS = 0.1
# ePay is waiting for a step (3-D Secure, a fingerprint): not final, ask again later.
PENDING_AT_GATEWAY = frozenset({G.NEW, G.THREE_DS, G.FINGERPRINT})


class SettleOutcome(StrEnum):
    """What a status check did to a charge."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"
    PENDING = "pending"  # ePay's answer is not final yet: ask later
    NOT_FOUND = "not_found"  # ePay has no such invoice (resultCode 102)


@dataclass(frozen=True)
class Settlement:
    """A charge after a status check, what the check did, the status ePay named and the
    transaction it described (its terminal's names included)."""

    charge: Charge
    outcome: SettleOutcome
    gateway_status: GatewayStatus | None = None
    transaction: TransactionStatus | None = None


class ChargeSettler:
    """Moves charges to what ePay says, through the state machine, once."""

    def __init__(
        self,
        *,
        store: ChargeStore,
        gateway: PaymentGateway,
        transitions: ChargeTransitions,
        telemetry: Telemetry,
        sleep: Callable[[float], None] = time.sleep,
        capture_wait: float = CAPTURE_WAIT_SECONDS,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._tx = transitions
        self._telemetry = telemetry
        self._sleep = sleep
        self._capture_wait = capture_wait

    def settle(
        self,
        charge_id: str,
        source: Source,
        deadline: Deadline,
        vet: Callable[[StatusResult], None] | None = None,
    ) -> Settlement:
        """Ask ePay's status API about a charge and apply the answer; `vet` sees the answer
        first and may refuse it by raising (nothing is applied then)."""
        charge = self._store.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        return self.settle_charge(charge, source, deadline, vet)

    def settle_charge(
        self,
        charge: Charge,
        source: Source,
        deadline: Deadline,
        vet: Callable[[StatusResult], None] | None = None,
    ) -> Settlement:
        """`settle` for a charge the caller has just read (strongly consistent): no second read.
        A change since that read loses the conditional write and the stored state wins."""
        self._telemetry.bind_charge(charge)
        answer = self._gateway.status(charge.invoice_id, charge.terminal_id, deadline)
        if vet is not None:
            vet(answer)
        return self.apply_status(charge, answer, source, deadline)

    def settle_or_report(self, charge: Charge, source: Source, deadline: Deadline) -> Charge:
        """`settle`; when ePay cannot answer, report it and carry on with the charge as stored
        (its reconciler schedule stands)."""
        try:
            return self.settle(charge.id, source, deadline).charge
        except GatewayError as exc:
            self._telemetry.gateway_failure(charge, exc)
            return self._tx.latest(charge)

    def apply_status(
        self, charge: Charge, answer: StatusResult, source: Source, deadline: Deadline
    ) -> Settlement:
        """Move a charge to what the status API says, once; contradictions go to NEEDS_REVIEW."""
        tx = answer.transaction
        if charge.status is S.NEEDS_REVIEW:
            return Settlement(charge, SettleOutcome.UNCHANGED, transaction=tx)
        if answer.not_found:
            return Settlement(charge, SettleOutcome.NOT_FOUND)
        target = SETTLES_AS.get(tx.status) if tx and tx.status else None
        if tx is None or target is None:
            return Settlement(charge, SettleOutcome.PENDING, tx.status if tx else None, tx)
        said = f"status API: {tx.status_name}"
        standing = _standing(charge, target)
        if tx.currency not in (None, charge.currency) or not tx.amounts.fits(
            charge.amount, standing
        ):
            # ePay's amounts tell of other money than this charge's (the service makes no
            # refunds): a person decides rather than a wrong amount being recorded.
            currency = f" {tx.currency}" if tx.currency else ""
            detail = f"{said} with {tx.amounts}{currency} for a {charge.amount} charge"
            return self._review(charge, detail, source, tx)
        if target is charge.status and not (target is S.AUTHORIZED and charge.capture_pending):
            return Settlement(charge, SettleOutcome.UNCHANGED, tx.status, tx)
        if target in _CAPTURE_OUTCOMES and capture_in_flight(charge, self._tx.now()):
            # Another path holds the capture claim: it alone records the capture's outcome (should
            # it die, the claim lapses and the reconciler settles the charge).
            return Settlement(charge, SettleOutcome.PENDING, tx.status, tx)
        if target is not charge.status and not can_transition(charge.status, target):
            detail = f"{said} but the charge is {charge.status.value}"
            return self._review(charge, detail, source, tx)
        epay = EpayRef(tx.transaction_id, tx.reference, tx.approval_code, tx.card_mask)
        if target is S.AUTHORIZED:
            moved = self.authorized(charge, epay, source, said, deadline)
        else:
            change = _settled(tx, target, epay, source, said, standing)
            moved = self._tx.move(charge, change)
        return Settlement(moved, SettleOutcome.CHANGED, tx.status, tx)

    def authorized(
        self, charge: Charge, epay: EpayRef, source: Source, detail: str, deadline: Deadline
    ) -> Charge:
        """Record an AUTH (money held); with auto capture, claim the capture by a conditional
        write, capture once at ePay, then record it. A path that loses the claim calls nothing."""
        steps = () if charge.status is S.AUTHORIZED else (Step(S.AUTHORIZED, detail),)
        if (
            charge.capture is CaptureMode.MANUAL
            or epay.transaction_id is None
            or charge.void_pending
        ):
            # Manual capture, nothing to capture by, or a void under way: record the hold only.
            return self._tx.move(charge, Change(source, steps, epay=epay, capture_pending=False))
        now = self._tx.now()
        if capture_in_flight(charge, now):
            # Another path holds the capture and records its outcome.
            return self._await_capture(charge, source, deadline)
        # The claim keeps the charge's next check (its due-index keys do not move: no index
        # write); a reconciler looking before the claim lapses finds it held and looks later.
        keep = KEEP if charge.next_check_at is None else charge.next_check_at
        claim = Change(
            source,
            steps,
            epay=epay,
            capture_pending=True,
            capture_claimed_at=now,
            next_check_at=keep,
        )
        try:
            claimed = self._tx.apply(charge, claim)
        except StaleStateError:
            # Another path moved it first: its state wins (its capture's outcome, if it claimed).
            return self._await_capture(self._tx.latest(charge), source, deadline)
        try:
            self._gateway.capture(epay.transaction_id, charge.terminal_id, None, deadline)
        except GatewayError as exc:
            if not (
                isinstance(exc, GatewayRejectedError)
                and self._captured_at_gateway(claimed, deadline)
            ):
                # The money is held; the reconciler retries or checks the capture later.
                self._telemetry.gateway_failure(claimed, exc)
                return self._tx.move(claimed, Change(source, capture_claimed_at=None))
        return self._tx.move(
            claimed,
            Change(
                source,
                (Step(S.CAPTURED, "auto capture"),),
                captured=charge.amount,
                capture_pending=False,
                capture_claimed_at=None,
            ),
        )

    def conclude(self, charge: Charge, target: ChargeStatus, detail: str, source: Source) -> Charge:
        """Settle without ePay's word: EXPIRED 3DS, FAILED (never at ePay), NEEDS_REVIEW."""
        if not can_transition(charge.status, target):
            raise InvalidTransitionError(f"{charge.status.value} cannot become {target.value}")
        error = None
        if target is S.FAILED:
            error = ChargeError("not_attempted", "ePay has no record of this charge", "other")
        return self._tx.move(charge, Change(source, (Step(target, detail),), error=error))

    def end_3ds(
        self,
        charge: Charge,
        target: ChargeStatus,
        detail: str,
        source: Source,
        error: ChargeError | None = None,
    ) -> Charge:
        """End a REQUIRES_3DS charge the customer can no longer complete (its page expired, or
        ePay's ACS address is unusable); any other status is returned as it is."""
        if charge.status is not S.REQUIRES_3DS:
            return charge
        return self._tx.move(charge, Change(source, (Step(target, detail),), error=error))

    def _await_capture(self, charge: Charge, source: Source, deadline: Deadline) -> Charge:
        """The charge once another path's in-flight capture has ended, waiting briefly, and only
        for the merchant's synchronous answer (other signals just leave it to the claimant)."""
        if source is not Source.API:
            return charge
        waited = 0.0
        until = min(self._capture_wait, max(0.0, deadline.remaining() - 1.0))
        while capture_in_flight(charge, self._tx.now()) and waited < until:
            self._sleep(CAPTURE_POLL_SECONDS)
            waited += CAPTURE_POLL_SECONDS
            charge = self._tx.latest(charge)
        return charge

    def _captured_at_gateway(self, charge: Charge, deadline: Deadline) -> bool:
        """After a refused capture: does ePay already show the money taken (an earlier attempt
        whose answer was lost)?"""
        try:
            answer = self._gateway.status(charge.invoice_id, charge.terminal_id, deadline)
        except GatewayError:
            return False
        return answer.transaction is not None and answer.transaction.status is G.CHARGE

    def _review(
        self, charge: Charge, detail: str, source: Source, tx: TransactionStatus | None = None
    ) -> Settlement:
        if not can_transition(charge.status, S.NEEDS_REVIEW):
            return Settlement(charge, SettleOutcome.UNCHANGED, transaction=tx)
        moved = self._tx.move(charge, Change(source, (Step(S.NEEDS_REVIEW, detail),)))
        return Settlement(moved, SettleOutcome.CHANGED, transaction=tx)


def _standing(charge: Charge, target: ChargeStatus) -> Decimal | None:
    """What ePay's transaction must stand at for `target` to fit this charge: all of it held
    (AUTHORIZED) or taken (CAPTURED: what we captured, or all of it); None: not checked."""
    if target is S.CAPTURED:
        return charge.captured_amount if charge.captured_amount is not None else charge.amount
    if target is S.AUTHORIZED:
        return charge.amount
    return None


def _settled(
    tx: TransactionStatus,
    target: ChargeStatus,
    epay: EpayRef,
    source: Source,
    detail: str,
    standing: Decimal | None,
) -> Change:
    """The change a final status other than AUTH makes (money taken, returned or refused)."""
    error = None
    if target is S.DECLINED:
        error = ChargeError(
            code=str(tx.reason_code if tx.reason_code is not None else "rejected"),
            message=tx.reason or "declined",
            category=tx.decline_category.value,
        )
    return Change(
        source,
        (Step(target, detail),),
        epay=epay,
        error=error,
        captured=standing if target is S.CAPTURED else None,
        capture_pending=False,
    )
