"""Settling from the status API and the reconciler's ladder, on in-memory fakes and a test clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from payments.charges.declines import DeclineCategory
from payments.charges.links import PublicLinks
from payments.charges.model import CHECK_LADDER, PROCESSING_SAFE_AGE, CaptureMode, ChargeStatus
from payments.charges.payment_gateway import (
    AuthResult,
    GatewayStatus,
    Secure3D,
    StatusResult,
    TransactionStatus,
)
from payments.charges.reconciler import Reconciler
from payments.charges.requests import ChargeRequest
from payments.charges.settlement import ChargeSettler
from payments.charges.use_cases import ChargeUseCases
from payments.errors import (
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
)
from payments.shared.deadline import Deadline
from tests.fakes import FakeGateway, FakeStore, RecordingTelemetry, fake_allocator

S = ChargeStatus


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def status(
    name: str, amount: str | None = "100.00", reason_code: int | None = None, **read: Any
) -> StatusResult:
    """A status answer as the adapter reads it (`read`: amounts, terminal names, category)."""
    return StatusResult(
        "100",
        "OK",
        TransactionStatus(
            "tx-1",
            "000000001",
            name,
            None if amount is None else Decimal(amount),
            "KZT",
            "rrn",
            "ap",
            "4400****",
            "r",
            reason_code,
            **read,
        ),
    )


NOT_FOUND = StatusResult("102", "No such invoice", None)
IN_PROGRESS = StatusResult("107", "In progress", None)


def setup(
    auth: AuthResult | Exception,
    capture: CaptureMode = CaptureMode.AUTO,
    capture_error: GatewayError | None = None,
    status_answers: list[StatusResult] | None = None,
) -> tuple[ChargeSettler, Reconciler, FakeStore, FakeGateway, Clock, str]:
    clock = Clock()
    store = FakeStore()
    gateway = FakeGateway(auth_outcome=auth, capture_error=capture_error)  # type: ignore[arg-type]
    gateway.status_answers.extend(status_answers or [])
    charges = ChargeUseCases.build(
        store=store,
        gateway=gateway,
        telemetry=RecordingTelemetry(),
        links=PublicLinks("https://pay.example"),
        allocator=fake_allocator(),
        clock=clock,
    )
    request = ChargeRequest(
        amount=Decimal("100.00"),
        currency="KZT",
        card_id="c0000000-0000-4000-8000-000000000001",
        account_id="a",
        description="d",
        capture=capture,
    )
    charge = charges.service.create_charge(request, "k", Deadline.after(20)).charge
    reconciler = Reconciler(
        store=store, settler=charges.settler, transitions=charges.transitions, clock=clock
    )
    return (
        charges.settler,
        reconciler,
        store,
        gateway,
        clock,
        charge.id,
    )


def unknown() -> Exception:
    return GatewayUnknownOutcomeError("timeout", operation="auth")


def history(store: FakeStore, charge_id: str) -> list[tuple[str | None, str, str]]:
    return [
        (e.from_status.value if e.from_status else None, e.to_status.value, e.source)
        for e in store.history[charge_id]
    ]


def test_unknown_charge_is_settled_by_the_status_api_and_auto_captured() -> None:
    # Given an UNKNOWN charge that ePay actually authorised
    _, reconciler, store, gateway, clock, charge_id = setup(unknown())
    gateway.status_answers.append(status("AUTH"))
    # When the reconciler runs after the first rung
    clock.advance(CHECK_LADDER[0])
    report = reconciler.run(Deadline.after(30))
    # Then the charge is captured, through AUTHORIZED, and nothing re-sent the auth
    charge = store.charges[charge_id]
    assert charge.status is S.CAPTURED
    assert charge.next_check_at is None
    assert report.settled == 1
    assert gateway.ops().count("auth") == 1
    assert gateway.ops()[-2:] == ["status", "capture"]
    assert history(store, charge_id)[-2:] == [
        ("UNKNOWN", "AUTHORIZED", "reconciler"),
        ("AUTHORIZED", "CAPTURED", "reconciler"),
    ]


def test_nothing_is_checked_before_it_is_due() -> None:
    # Given an UNKNOWN charge whose first check is not yet due
    _, reconciler, _, gateway, _, _ = setup(unknown())
    # When the reconciler runs
    report = reconciler.run(Deadline.after(30))
    # Then it checked nothing and did not ask the status API
    assert report.checked == 0
    assert "status" not in gateway.ops()


def test_pending_answers_climb_the_ladder_then_need_review() -> None:
    # Given ePay answering "in progress" (107) to every check
    _, reconciler, store, gateway, clock, charge_id = setup(unknown())
    gateway.status_answers.extend([IN_PROGRESS] * len(CHECK_LADDER))
    waits = []
    # When the reconciler runs each time a check falls due
    for _ in range(len(CHECK_LADDER)):
        due = store.charges[charge_id].next_check_at
        assert due is not None
        waits.append(due - clock.now)
        clock.now = due
        reconciler.run(Deadline.after(30))
    # Then it waited along the ladder and finally asked for a person
    assert waits == list(CHECK_LADDER)
    assert store.charges[charge_id].status is S.NEEDS_REVIEW
    assert gateway.ops().count("status") == len(CHECK_LADDER)


def test_no_such_invoice_fails_only_once_it_is_old_enough() -> None:
    # Given an UNKNOWN charge ePay has no invoice for (102), twice
    _, reconciler, store, gateway, clock, charge_id = setup(unknown())
    gateway.status_answers.extend([NOT_FOUND, NOT_FOUND])
    # When the first check runs while the charge is young / Then it stays UNKNOWN
    clock.advance(CHECK_LADDER[0])
    reconciler.run(Deadline.after(30))
    assert store.charges[charge_id].status is S.UNKNOWN
    # When a check runs 15 minutes later / Then the charge FAILED as never attempted
    clock.advance(timedelta(minutes=15))
    reconciler.run(Deadline.after(30))
    charge = store.charges[charge_id]
    assert charge.status is S.FAILED
    assert charge.error is not None
    assert charge.error.code == "not_attempted"


def test_status_api_down_reschedules_without_a_state_change() -> None:
    # Given an UNKNOWN charge and the status API down
    _, reconciler, store, gateway, clock, charge_id = setup(unknown())
    gateway.status_answers.append(GatewayUnavailableError("down", operation="status"))
    # When its first check runs
    clock.advance(CHECK_LADDER[0])
    reconciler.run(Deadline.after(30))
    # Then it stays UNKNOWN, the attempt is counted and the next rung is scheduled
    charge = store.charges[charge_id]
    assert charge.status is S.UNKNOWN
    assert charge.check_attempts == 1
    assert charge.next_check_at == clock.now + CHECK_LADDER[1]


def test_abandoned_3ds_expires_after_its_token() -> None:
    # Given a charge waiting for 3DS
    three_ds = AuthResult(
        GatewayStatus.THREE_DS, "tx-3", "1", secure3d=Secure3D("PAREQ", "MD", "https://acs")
    )
    _, reconciler, store, gateway, clock, charge_id = setup(three_ds)
    # Then its first check is due one rung after its access token expires
    charge = store.charges[charge_id]
    assert charge.three_ds is not None
    assert charge.next_check_at == charge.three_ds.token_expires_at + CHECK_LADDER[0]
    # When the check runs and ePay still shows 3D (the customer never came back)
    gateway.status_answers.append(status("3D"))
    clock.now = charge.next_check_at
    reconciler.run(Deadline.after(30))
    # Then the charge EXPIRED
    assert store.charges[charge_id].status is S.EXPIRED


def test_failed_auto_capture_is_retried_by_the_reconciler() -> None:
    # Given an AUTH whose auto capture failed (money held, charge AUTHORIZED)
    _, reconciler, store, gateway, clock, charge_id = setup(
        AuthResult(GatewayStatus.AUTH, "tx-1", "1"),
        capture_error=GatewayRejectedError("busy", operation="capture", gateway_code=100),
        status_answers=[status("AUTH")],
    )
    charge = store.charges[charge_id]
    assert charge.status is S.AUTHORIZED
    assert charge.capture_pending is True
    # And its next check is the one it had: the claim moved no due-index key
    assert charge.next_check_at == charge.created_at + PROCESSING_SAFE_AGE
    # When ePay still shows AUTH and the capture now succeeds, at that check
    gateway.capture_error = None
    gateway.status_answers.append(status("AUTH"))
    clock.advance(PROCESSING_SAFE_AGE)
    reconciler.run(Deadline.after(30))
    # Then the reconciler captured it
    assert store.charges[charge_id].status is S.CAPTURED
    assert gateway.ops().count("capture") == 2


def test_a_charge_whose_capture_claim_is_held_is_left_to_its_claimant() -> None:
    # Given an authorized charge whose auto capture another path claimed a moment ago, due now
    _, reconciler, store, gateway, clock, charge_id = setup(
        AuthResult(GatewayStatus.AUTH, "tx-1", "1"),
        capture_error=GatewayRejectedError("busy", operation="capture", gateway_code=100),
        status_answers=[status("AUTH")],
    )
    clock.advance(PROCESSING_SAFE_AGE)
    held = replace(store.charges[charge_id], capture_claimed_at=clock())
    store.charges[charge_id] = held
    calls = len(gateway.ops())
    # When the reconciler runs
    reconciler.run(Deadline.after(30))
    # Then it asked ePay nothing and wrote nothing: the claimant's write cannot lose its race
    assert gateway.ops()[calls:] == []
    assert store.charges[charge_id] == held


def test_contradiction_of_a_final_state_goes_to_review_with_both_facts() -> None:
    # Given a DECLINED charge
    service, _, store, gateway, _, charge_id = setup(
        GatewayRejectedError("no", operation="auth", gateway_code=484)
    )
    assert store.charges[charge_id].status is S.DECLINED
    # When the status API says the money was taken
    gateway.status_answers.append(status("CHARGE"))
    settlement = service.settle(charge_id, "postlink", Deadline.after(10))
    # Then the charge is NEEDS_REVIEW and the history says why
    assert settlement.charge.status is S.NEEDS_REVIEW
    last = store.history[charge_id][-1]
    assert last.from_status is S.DECLINED
    assert "CHARGE" in last.detail


def test_same_answer_twice_changes_nothing_the_second_time() -> None:
    # Given an UNKNOWN charge that ePay shows as CHARGE
    service, _, store, gateway, _, charge_id = setup(unknown())
    gateway.status_answers.extend([status("CHARGE"), status("CHARGE")])
    # When it is settled twice (e.g. a postLink and its copy)
    first = service.settle(charge_id, "postlink", Deadline.after(10))
    second = service.settle(charge_id, "postlink", Deadline.after(10))
    # Then the first captured it and the second changed nothing, adding no history
    assert first.outcome == "changed"
    assert second.outcome == "unchanged"
    assert first.charge.status is second.charge.status is S.CAPTURED
    assert len(store.history[charge_id]) == 3


def test_failure_after_success_never_moves_backwards() -> None:
    # Given a charge captured at creation (single-stage CHARGE)
    service, _, store, gateway, _, charge_id = setup(AuthResult(GatewayStatus.CHARGE, "tx-1", "1"))
    gateway.status_answers.append(status("CHARGE"))
    before = len(store.history[charge_id])
    # When a postLink makes us settle it again
    settlement = service.settle(charge_id, "postlink", Deadline.after(10))
    # Then it stays CAPTURED and its history does not grow
    assert settlement.charge.status is S.CAPTURED
    assert len(store.history[charge_id]) == before


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AUTH", S.CAPTURED),
        ("CHARGE", S.CAPTURED),
        ("REJECT", S.DECLINED),
        ("FAILED", S.DECLINED),
        ("CANCEL", S.CANCELLED),
        ("CANCEL_OLD", S.EXPIRED),
    ],
)
def test_status_names_map_to_states(name: str, expected: ChargeStatus) -> None:
    # Given an UNKNOWN charge and the status API answering this status name (reason 484, which
    # the adapter reads as a soft decline)
    service, _, _store, gateway, _, charge_id = setup(unknown())
    soft = DeclineCategory.SOFT
    gateway.status_answers.append(status(name, reason_code=484, decline_category=soft))
    # When the reconciler settles it
    result = service.settle(charge_id, "reconciler", Deadline.after(10)).charge
    # Then the charge ends in the matching state; a decline keeps the code as a soft decline
    assert result.status is expected
    if expected is S.DECLINED:
        assert result.error is not None
        assert (result.error.code, result.error.category) == ("484", "soft")


def test_amount_above_the_charge_is_a_contradiction() -> None:
    # Given the status API shows 1000.00 taken for a 100.00 charge
    service, _, _, gateway, _, charge_id = setup(unknown())
    gateway.status_answers.append(status("CHARGE", amount="1000.00"))
    # When the reconciler settles it / Then it needs a person
    assert (
        service.settle(charge_id, "reconciler", Deadline.after(10)).charge.status is S.NEEDS_REVIEW
    )


def test_stale_processing_charge_is_found_and_settled() -> None:
    # Given a charge whose function died after writing it (still PROCESSING)
    _, reconciler, store, gateway, clock, charge_id = setup(
        AuthResult(GatewayStatus.AUTH, "tx-1", "1")
    )
    charge = store.charges[charge_id]
    store.charges[charge_id] = replace(
        charge, status=S.PROCESSING, next_check_at=charge.created_at + timedelta(minutes=2)
    )
    # When the reconciler runs two minutes later and ePay shows AUTH
    gateway.status_answers.append(status("AUTH"))
    clock.advance(timedelta(minutes=2))
    reconciler.run(Deadline.after(30))
    # Then the charge is settled and captured
    assert store.charges[charge_id].status is S.CAPTURED


def test_a_capture_refused_because_another_path_captured_settles_captured() -> None:
    # Given an UNKNOWN charge, and ePay refusing our capture because a racing path captured it
    service, _, _store, gateway, _, charge_id = setup(
        unknown(), capture_error=GatewayRejectedError("no", operation="capture", gateway_code=100)
    )
    gateway.status_answers.extend([status("AUTH"), status("CHARGE")])
    # When the status API says AUTH and we try to capture
    result = service.settle(charge_id, "postlink", Deadline.after(10)).charge
    # Then the refusal is checked against the status API, and the charge is CAPTURED, not stuck
    assert result.status is S.CAPTURED
    assert result.capture_pending is False
    assert gateway.ops()[-3:] == ["status", "capture", "status"]


def test_a_signal_leaves_a_claimed_capture_to_its_claimant() -> None:
    # Given an UNKNOWN charge now AUTHORIZED with a capture claimed by another path a moment ago
    service, _, store, gateway, clock, charge_id = setup(unknown())
    claimed = replace(
        store.charges[charge_id],
        status=S.AUTHORIZED,
        capture_pending=True,
        capture_claimed_at=clock.now,
        version=store.charges[charge_id].version + 1,
    )
    store.charges[charge_id] = claimed
    writes, captures = store.writes, gateway.ops().count("capture")
    # When a postLink's status check says ePay already took the money
    gateway.status_answers.append(status("CHARGE"))
    settlement = service.settle(charge_id, "postlink", Deadline.after(10))
    # Then it records nothing and calls no capture: the claimant records the capture's outcome
    assert settlement.outcome == "pending"
    assert settlement.charge.status is S.AUTHORIZED
    assert store.writes == writes
    assert gateway.ops().count("capture") == captures
    # When the claim has lapsed (its holder died) / Then the next check settles it
    clock.advance(timedelta(minutes=2))
    gateway.status_answers.append(status("CHARGE"))
    assert service.settle(charge_id, "reconciler", Deadline.after(10)).charge.status is S.CAPTURED
