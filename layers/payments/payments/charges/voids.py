"""Voids: release a customer's hold (cancel an AUTHORIZED charge), or stop a charge waiting for
3-D Secure, so the money is never taken.

A void is claimed like a capture (the same claim: only one operation on the held money at a time),
so a void racing a capture, or a postLink that captures, ends in one state that matches ePay's.
A cancel moves no money, so when its answer is lost the reconciler may send it again; the charge
keeps `void_pending` until ePay's status says the hold is gone.
"""

from __future__ import annotations

from payments.charges.model import (
    CHECK_LADDER,
    PENDING_FINAL_AGE,
    Charge,
    S,
    Source,
    capture_in_flight,
)
from payments.charges.payment_gateway import GatewayStatus, PaymentGateway
from payments.charges.ports import ChargeStore
from payments.charges.settlement import ChargeSettler
from payments.charges.transitions import Change, ChargeTransitions, Step
from payments.errors import (
    CaptureInProgressError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnknownOutcomeError,
    InvalidTransitionError,
    NotFoundError,
    StaleStateError,
)
from payments.shared.deadline import Deadline

G = GatewayStatus
# ePay statuses in which the hold is gone (or never was): a void has nothing left to do.
NOTHING_HELD = frozenset({G.CANCEL, G.CANCEL_OLD, G.REJECT, G.FAILED, G.REFUND})


class ChargeVoids:
    """Cancels charges at ePay, once, and settles voids whose answer was lost."""

    def __init__(
        self,
        *,
        store: ChargeStore,
        gateway: PaymentGateway,
        transitions: ChargeTransitions,
        settler: ChargeSettler,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._tx = transitions
        self._settler = settler

    def cancel(self, charge_id: str, deadline: Deadline) -> Charge:
        """Cancel a charge: AUTHORIZED is voided at ePay, REQUIRES_3DS is stopped at once;
        CANCELLED is answered as it is; anything else is InvalidTransitionError (409)."""
        charge = self._store.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        if charge.status is S.CANCELLED:
            return charge
        if charge.status is S.REQUIRES_3DS:
            return self._stop_3ds(charge)
        if charge.status is not S.AUTHORIZED:
            raise _not_cancellable(charge)
        now = self._tx.now()
        if capture_in_flight(charge, now):
            raise CaptureInProgressError("a capture or void of this charge is in progress")
        try:
            claimed = self._tx.apply(charge, Change(Source.API, capture_claimed_at=now))
        except StaleStateError as exc:
            latest = self._tx.latest(charge)
            if latest.status is S.CANCELLED:
                return latest
            if latest.status is S.AUTHORIZED:
                raise CaptureInProgressError(
                    "a capture or void of this charge is in progress"
                ) from exc
            raise _not_cancellable(latest) from exc
        return self._void(claimed, Source.API, deadline)

    def _void(self, claimed: Charge, source: Source, deadline: Deadline) -> Charge:
        """Send the cancel of a claimed AUTHORIZED charge and record what ePay said."""
        assert claimed.epay.transaction_id is not None
        try:
            self._gateway.cancel(claimed.epay.transaction_id, claimed.terminal_id, deadline)
        except GatewayUnknownOutcomeError:
            self._tx.move(claimed, self._pending(source))
            raise
        except GatewayRejectedError as exc:
            # The hold is not there to release: taken (a capture won) or gone. Show the truth.
            released = self._tx.move(claimed, Change(source, capture_claimed_at=None))
            settled = self._settler.settle_or_report(released, source, deadline)
            if settled.status is S.CANCELLED:
                return settled
            raise _not_cancellable(settled) from exc
        except GatewayError:
            self._tx.move(claimed, Change(source, capture_claimed_at=None))
            raise
        done = Change(
            source,
            (Step(S.CANCELLED, "void"),),
            capture_claimed_at=None,
            void_pending=False,
            next_check_at=None,
        )
        return self._tx.move(claimed, done)

    def _pending(self, source: Source) -> Change:
        """The cancel's answer was lost: the reconciler asks ePay soon."""
        return Change(
            source,
            capture_claimed_at=None,
            void_pending=True,
            next_check_at=self._tx.now() + CHECK_LADDER[0],
            check_attempts=0,
        )

    def _stop_3ds(self, charge: Charge) -> Charge:
        """CANCELLED at once: leaving REQUIRES_3DS erases the 3-D Secure data and spends the page
        token, so no later page visit or TermUrl post can complete it. ePay may have authorised
        it meanwhile: the reconciler checks, and voids it then."""
        change = Change(
            Source.API,
            (Step(S.CANCELLED, "cancelled during 3-D Secure"),),
            void_pending=True,
            next_check_at=self._tx.now() + CHECK_LADDER[0],
            check_attempts=0,
        )
        try:
            return self._tx.apply(charge, change)
        except StaleStateError as exc:
            latest = self._tx.latest(charge)
            if latest.status is S.CANCELLED:
                return latest
            raise _not_cancellable(latest) from exc

    def reconcile(self, charge: Charge, deadline: Deadline) -> Charge:
        """Finish a void whose outcome is unclear, from ePay's status: cancel again while the
        money is held, done once it is not, NEEDS_REVIEW if ePay took it after a cancel during
        3-D Secure. Raises GatewayError when ePay cannot answer (checked later)."""
        answer = self._gateway.status(charge.invoice_id, charge.terminal_id, deadline)
        status = answer.transaction.status if answer.transaction else None
        source = Source.RECONCILER
        if status is G.AUTH:
            assert answer.transaction is not None
            return self._void_again(charge, answer.transaction.transaction_id, deadline)
        if status is G.CHARGE:
            if charge.status is S.CANCELLED:
                step = Step(S.NEEDS_REVIEW, "ePay took the money of a charge cancelled in 3DS")
                return self._tx.move(charge, Change(source, (step,), void_pending=False))
            # A capture won the race: record it, and the void is over.
            settled = self._settler.settle_or_report(charge, source, deadline)
            if settled.void_pending and settled.status is not S.AUTHORIZED:
                settled = self._tx.move(settled, Change(source, void_pending=False))
            return settled
        if status in NOTHING_HELD or answer.not_found:
            steps = (
                (Step(S.CANCELLED, "void (status API)"),) if charge.status is S.AUTHORIZED else ()
            )
            done = Change(source, steps, void_pending=False, next_check_at=None)
            return self._tx.move(charge, done)
        if charge.status is S.CANCELLED and self._tx.now() - charge.created_at >= PENDING_FINAL_AGE:
            # Still waiting for a 3-D Secure step nobody can finish (its data is erased and every
            # token it could use has expired): nothing will be held. The void is done.
            done = Change(source, void_pending=False, next_check_at=None)
            return self._tx.move(charge, done)
        # Still pending at ePay (3DS, in progress) or unreadable: ask again later.
        return charge

    def _void_again(self, charge: Charge, transaction: str | None, deadline: Deadline) -> Charge:
        """The money is still held at ePay: cancel it (again)."""
        if charge.status is S.CANCELLED:
            # Stopped during 3-D Secure, authorised by ePay all the same: release that hold.
            transaction = transaction or charge.epay.transaction_id
            if transaction is None:
                return charge  # the status named no transaction; asked again later
            self._gateway.cancel(transaction, charge.terminal_id, deadline)
            done = Change(Source.RECONCILER, void_pending=False, next_check_at=None)
            return self._tx.move(charge, done)
        now = self._tx.now()
        if capture_in_flight(charge, now):
            return charge
        try:
            claimed = self._tx.apply(charge, Change(Source.RECONCILER, capture_claimed_at=now))
        except StaleStateError:
            return self._tx.latest(charge)  # another path claimed it: its outcome stands
        return self._void(claimed, Source.RECONCILER, deadline)


def _not_cancellable(charge: Charge) -> InvalidTransitionError:
    hint = "; refund it instead" if charge.status in {S.CAPTURED, S.PARTIALLY_REFUNDED} else ""
    return InvalidTransitionError(f"a {charge.status.value} charge cannot be cancelled{hint}")
