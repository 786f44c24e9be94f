"""Refund use cases: create a refund once per key, reserve its amount first, send it once,
settle it; read and list refunds.

The refund's amount is reserved on the charge (`refund_reserved`) in the same transaction that
writes the refund and its idempotency key, conditional on the charge being unchanged since it was
read, so racing refunds can never reserve more than was captured. ePay is called only after that
write, once (it has no idempotency key; `externalID` names our refund in its ledger). A refund
whose answer was lost stays PENDING, reserved, until the reconciler reads ePay's status.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from payments.charges.model import Charge, S, Source
from payments.charges.transitions import Change, ChargeTransitions, Step
from payments.errors import (
    AmountNotRefundableError,
    ConflictError,
    DuplicateKeyError,
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
    InvalidTransitionError,
    NotFoundError,
    StaleStateError,
    ValidationError,
)
from payments.refunds.model import (
    REFUND_CHECK_LADDER,
    Refund,
    RefundError,
    RefundStatus,
    minimum_refund,
)
from payments.shared.clock import utc_now
from payments.shared.idempotency import IdempotencyRecord, create_once, fingerprint

if TYPE_CHECKING:
    from payments.charges.ports import ChargeStore
    from payments.refunds.ports import RefundGateway, RefundStore
    from payments.refunds.requests import RefundRequest
    from payments.shared.deadline import Deadline

REFUNDABLE = frozenset({S.CAPTURED, S.PARTIALLY_REFUNDED})
# Racing refunds of one charge each win the conditional write in turn; more rounds than this
# means something else keeps changing the charge.
MAX_WRITE_ROUNDS = 64


@dataclass(frozen=True)
class RefundResult:
    """The refund a request produced, and whether it was a replay."""

    refund: Refund
    replayed: bool


class RefundService:
    """Refunds captured charges exactly once."""

    def __init__(
        self,
        *,
        store: RefundStore,
        charges: ChargeStore,
        transitions: ChargeTransitions,
        gateway: RefundGateway,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = lambda: "re_" + secrets.token_hex(16),
    ) -> None:
        self._store = store
        self._charges = charges
        self._tx = transitions
        self._gateway = gateway
        self._clock = clock
        self._new_id = new_id

    # --- create ---------------------------------------------------------------------------

    def create_refund(
        self, charge_id: str, request: RefundRequest, key: str, deadline: Deadline
    ) -> RefundResult:
        """Reserve, then send once; a replay of the key answers the refund it created."""
        charge = self._charge(charge_id)  # a 404 before anything else
        request_hash = fingerprint(request.fingerprint_fields(charge_id))
        once = create_once(
            key,
            request_hash,
            lookup=self._store.get_idempotency,
            create=lambda: self._reserve(charge, request, key, request_hash),
            replay=self._replay,
        )
        if once.replayed:
            return RefundResult(once.value, replayed=True)
        # The transaction and terminal a refund goes to never change once captured.
        return RefundResult(self._send(once.value, charge, deadline), replayed=False)

    def _reserve(
        self, charge: Charge, request: RefundRequest, key: str, request_hash: str
    ) -> Refund | None:
        """Write the refund and reserve its amount on the charge (as read; read again after a
        lost race); None if the key was taken."""
        for _round in range(MAX_WRITE_ROUNDS):
            amount = _checked_amount(charge, request.amount)
            now = self._clock()
            refund = Refund(
                id=self._new_id(),
                charge_id=charge.id,
                amount=amount,
                currency=charge.currency,
                status=RefundStatus.PENDING,
                idempotency_key=key,
                request_hash=request_hash,
                created_at=now,
                updated_at=now,
                reason=request.reason,
                metadata=request.metadata,
                # Checked by the reconciler if this function dies before ePay's answer is kept.
                next_check_at=now + REFUND_CHECK_LADDER[0],
            )
            change = Change(Source.API, refund_reserved=charge.refund_reserved + amount)
            try:
                self._tx.apply(charge, change, write=self._store.reserving(refund))
            except DuplicateKeyError as exc:
                if exc.which == "refund_key":
                    return None
                raise
            except StaleStateError:
                # The charge changed (another refund, a capture): read it again.
                charge = self._charge(charge.id)
                continue
            return refund
        raise ConflictError("the charge keeps changing; retry the refund")

    def _replay(self, record: IdempotencyRecord) -> Refund:
        refund = self._store.get(record.resource_id)
        if refund is None:
            raise NotFoundError("no such refund")
        return refund

    def _send(self, refund: Refund, charge: Charge, deadline: Deadline) -> Refund:
        assert charge.epay.transaction_id is not None  # a captured charge has one
        try:
            self._gateway.refund(
                charge.epay.transaction_id, charge.terminal_id, refund.amount, refund.id, deadline
            )
        except GatewayRejectedError as exc:
            code = str(exc.gateway_code if exc.gateway_code is not None else "rejected")
            return self.fail(refund, RefundError(code, exc.message), Source.API)
        except GatewayUnavailableError as exc:
            # The request never reached ePay (no token, no connection): nothing was returned.
            return self.fail(refund, RefundError(exc.code, exc.message), Source.API)
        except GatewayUnknownOutcomeError:
            # Maybe returned, maybe not: only ePay's status can tell (the reconciler asks). The
            # reservation holds, so nothing else can refund that money meanwhile.
            return refund
        return self.succeed(refund, Source.API)

    # --- settle (also the reconciler's) -----------------------------------------------------

    def succeed(self, refund: Refund, source: Source) -> Refund:
        """Record a refund ePay made: the charge's refunded amount grows, its reservation
        shrinks, it becomes PARTIALLY_REFUNDED or REFUNDED."""

        def change(charge: Charge) -> Change:
            refunded = charge.refunded_amount + refund.amount
            target = (
                S.REFUNDED if refunded >= (charge.captured_amount or 0) else S.PARTIALLY_REFUNDED
            )
            step = Step(target, f"refund {refund.id}: {refund.amount}")
            # A charge a person is reviewing keeps its status; its amounts still add up.
            steps = (step,) if charge.status in REFUNDABLE else ()
            return Change(
                source,
                steps,
                refunded=refunded,
                refund_reserved=charge.refund_reserved - refund.amount,
            )

        return self._settle(refund, RefundStatus.SUCCEEDED, None, change)

    def fail(self, refund: Refund, error: RefundError, source: Source) -> Refund:
        """Record a refund that did not happen: its reservation is released."""

        def change(charge: Charge) -> Change:
            return Change(source, refund_reserved=charge.refund_reserved - refund.amount)

        return self._settle(refund, RefundStatus.FAILED, error, change)

    def review(self, refund: Refund, why: str) -> Refund:
        """A refund ePay's status cannot account for: a person decides (reservation kept)."""
        current = self._store.get(refund.id) or refund
        if current.status is not RefundStatus.PENDING:
            return current
        after = replace(
            current,
            status=RefundStatus.NEEDS_REVIEW,
            error=RefundError("needs_review", why),
            updated_at=self._clock(),
            version=current.version + 1,
            next_check_at=None,
        )
        try:
            return self._store.update(current, after)
        except StaleStateError:
            return self._store.get(refund.id) or current

    def _settle(
        self,
        refund: Refund,
        status: RefundStatus,
        error: RefundError | None,
        change: Callable[[Charge], Change],
    ) -> Refund:
        """Write the refund's outcome and the charge's amounts together; when either changed
        meanwhile read both again (another path may have settled this refund already)."""
        for _round in range(MAX_WRITE_ROUNDS):
            current = self._store.get(refund.id)
            if current is None:
                raise NotFoundError("no such refund")
            if current.status is not RefundStatus.PENDING:
                return current  # settled by another path
            after = replace(
                current,
                status=status,
                error=error,
                updated_at=self._clock(),
                version=current.version + 1,
                next_check_at=None,
            )
            charge = self._charge(current.charge_id)
            try:
                self._tx.apply(charge, change(charge), write=self._store.settling(current, after))
            except (StaleStateError, InvalidTransitionError):
                # The charge or the refund changed since read (another path may have settled
                # this very refund and moved the charge): read both again.
                continue
            return after
        raise ConflictError("the charge keeps changing; the refund is settled later")

    # --- read -------------------------------------------------------------------------------

    def get_refund(self, refund_id: str) -> Refund:
        """The stored refund, or NotFoundError."""
        refund = self._store.get(refund_id)
        if refund is None:
            raise NotFoundError("no such refund")
        return refund

    def list_refunds(self, charge_id: str) -> list[Refund]:
        """A charge's refunds, oldest first (NotFoundError for no such charge)."""
        self._charge(charge_id)
        return self._store.list_for_charge(charge_id)

    def _charge(self, charge_id: str) -> Charge:
        charge = self._charges.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        return charge


def _checked_amount(charge: Charge, asked: Decimal | None) -> Decimal:
    """The amount to refund, or the rule it breaks (checked before anything is written)."""
    if charge.status not in REFUNDABLE:
        raise InvalidTransitionError(
            f"only a CAPTURED or PARTIALLY_REFUNDED charge can be refunded; it is "
            f"{charge.status.value}"
        )
    left = charge.refundable
    amount = left if asked is None else asked
    minimum = minimum_refund(charge.currency)
    if asked is not None and asked < minimum:
        raise ValidationError(
            "the request is invalid", {"amount": f"must be at least {minimum} {charge.currency}"}
        )
    if amount > left or amount < minimum:
        raise AmountNotRefundableError(
            f"the amount exceeds what is left to refund ({left} {charge.currency}: captured, "
            "less refunded and pending refunds)"
            if amount > left
            else f"what is left to refund ({left} {charge.currency}) is below the minimum refund"
        )
    return amount
