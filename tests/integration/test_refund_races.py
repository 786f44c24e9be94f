"""Races the chaos scenario found between paths settling refunds and voids (each reproduced
here exactly: the second path is made to act inside the first one's window)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from local.chaos import CARD, ChaosReport, Rig, wire
from payments.charges.model import CaptureMode, Charge, ChargeStatus, Source
from payments.charges.payment_gateway import StatusResult
from payments.charges.reconciler import CheckOutcome, Reconciler
from payments.charges.requests import ChargeRequest
from payments.errors import GatewayUnknownOutcomeError
from payments.refunds.model import RefundStatus
from payments.refunds.reconciler import RefundCheck, RefundReconciler
from payments.refunds.requests import RefundRequest
from payments.shared.deadline import Deadline
from tests.integration.conftest import Stack

S = ChargeStatus


def rig_for(stack: Stack, seed: int) -> Rig:
    return wire(stack.table, stack.dynamodb, stack.simulator, ChaosReport(), seed)


def charge(rig: Rig, n: int, card: int, capture: CaptureMode = CaptureMode.AUTO) -> Charge:
    request = ChargeRequest(
        amount=Decimal(100), currency="KZT", card_id=CARD.format(card), account_id=f"c-{n}",
        description="race", capture=capture, recurrent=False,
    )  # fmt: skip
    return rig.charges.service.create_charge(request, f"race-{n}", Deadline.after(20)).charge


def test_a_refund_settled_twice_at_once_settles_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a full refund whose answer was lost (PENDING; ePay returned the 100)
    rig = rig_for(stack, 1)
    taken = charge(rig, 1, 1)
    stack.simulator.inject("refund", "timeout_after_commit", delay=1.0)
    refund = rig.refunds.create_refund(taken.id, RefundRequest(), "k-1", Deadline.after(20)).refund
    assert refund.status is RefundStatus.PENDING
    # When two paths settle it, the second from a copy it read (PENDING) before the first wrote
    store = rig.refund_store
    stale = store.get(refund.id)
    rig.refunds.succeed(refund, Source.RECONCILER)
    reads = iter([stale])
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda refund_id: next(reads, None) or real_get(refund_id))
    again = rig.refunds.succeed(refund, Source.RECONCILER)
    # Then the second sees it settled and changes nothing (no REFUNDED -> REFUNDED error)
    assert again.status is RefundStatus.SUCCEEDED
    final = rig.store.get(taken.id)
    assert final is not None
    assert (final.status, final.refunded_amount, final.refund_reserved) == (
        S.REFUNDED,
        Decimal(100),
        Decimal(0),
    )


def test_a_sibling_settled_during_a_check_is_counted_on_both_sides(stack: Stack) -> None:
    # Given two refunds (30 and 20) whose answers were lost; ePay returned both (50)
    rig = rig_for(stack, 2)
    taken = charge(rig, 2, 1)
    made = []
    for key, amount in (("k-a", 30), ("k-b", 20)):
        stack.simulator.inject("refund", "500_after_commit")
        request = RefundRequest(Decimal(amount))
        made.append(rig.refunds.create_refund(taken.id, request, key, Deadline.after(20)).refund)
    first, second = made

    def status_while_the_first_settles(
        invoice: str, terminal: str, deadline: Deadline
    ) -> StatusResult:
        rig.refunds.succeed(first, Source.RECONCILER)  # another reconciler, meanwhile
        answer: StatusResult = rig.gateway.status(invoice, terminal, deadline)
        return answer

    checker = RefundReconciler(
        store=rig.refund_store,
        charges=rig.store,
        service=rig.refunds,
        status=status_while_the_first_settles,
        clock=rig.clock,
    )
    rig.clock.set(rig.clock.now + timedelta(minutes=2))
    # When the second is checked / Then ePay's 50 = 30 + 20: it succeeded, no review
    assert checker.check(second.id, Deadline.after(20)) is RefundCheck.SUCCEEDED


def test_a_charge_cancelled_during_3ds_stays_cancelled_when_the_step_never_ends(
    stack: Stack,
) -> None:
    # Given a charge cancelled while waiting for 3-D Secure, which the customer never completes
    rig = rig_for(stack, 3)
    waiting = charge(rig, 3, 3)
    assert waiting.status is S.REQUIRES_3DS
    cancelled = rig.charges.voids.cancel(waiting.id, Deadline.after(20))
    assert (cancelled.status, cancelled.void_pending) == (S.CANCELLED, True)
    # When the reconciler looks at every due time (ePay says "3D" for ever)
    for _ in range(10):
        current = rig.store.get(waiting.id)
        assert current is not None
        if current.next_check_at is None:
            break
        rig.clock.set(current.next_check_at)
        rig.reconcile[0](Deadline.after(20))
    # Then it stays CANCELLED and the void is done: nothing can be held any more
    final = rig.store.get(waiting.id)
    assert final is not None
    assert (final.status, final.void_pending, final.next_check_at) == (S.CANCELLED, False, None)


def test_a_refused_void_while_the_status_flakes_is_checked_later_not_raised(
    stack: Stack,
) -> None:
    # Given a held charge whose cancel never reached ePay (void pending)
    rig = rig_for(stack, 4)
    held = charge(rig, 4, 1, CaptureMode.MANUAL)
    stack.simulator.inject("cancel", "500_before_commit")
    with pytest.raises(GatewayUnknownOutcomeError):
        rig.charges.voids.cancel(held.id, Deadline.after(20))
    pending = rig.store.get(held.id)
    assert pending is not None
    assert pending.void_pending
    # And another path's cancel lands at ePay right after the reconciler reads AUTH, after which
    # the status API answers "in progress"
    real_status: Callable[..., Any] = rig.gateway.status
    calls: list[StatusResult] = []

    def status(invoice: str, terminal: str, deadline: Deadline) -> StatusResult:
        answer: StatusResult = real_status(invoice, terminal, deadline)
        if not calls:
            assert pending.epay.transaction_id is not None
            rig.gateway.inner.cancel(pending.epay.transaction_id, pending.terminal_id, deadline)
            stack.simulator.inject("status", "in_progress")
        calls.append(answer)
        return answer

    rig.gateway.status = status  # type: ignore[method-assign]
    reconciler = Reconciler(
        store=rig.store,
        settler=rig.charges.settler,
        transitions=rig.charges.transitions,
        clock=rig.clock,
        voids=rig.charges.voids,
    )
    assert pending.next_check_at is not None
    rig.clock.set(pending.next_check_at)
    # When it checks the charge / Then nothing is raised: it looks again later
    result = reconciler.check(held.id, Deadline.after(20), forced=False)
    assert result.outcome in {CheckOutcome.RESCHEDULED, CheckOutcome.SETTLED}
