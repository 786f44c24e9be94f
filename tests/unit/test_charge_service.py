"""The charge use case with in-memory fakes: outcomes, write-before-call and idempotency."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from payments.charges.links import PublicLinks
from payments.charges.model import CaptureMode, ChargeStatus, charge_id_hint, secret_hash_digest
from payments.charges.payment_gateway import AuthRequest, AuthResult, GatewayStatus, Secure3D
from payments.charges.requests import ChargeRequest
from payments.charges.service import ChargeService
from payments.charges.use_cases import ChargeUseCases
from payments.errors import (
    ConflictError,
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    InvalidTransitionError,
)
from payments.shared.deadline import Deadline
from tests.fakes import FakeGateway, FakeStore, RecordingTelemetry, fake_allocator

AUTH = AuthResult(
    GatewayStatus.AUTH,
    "tx-1",
    "000000001",
    "123456789012",
    "A1B2C3",
    "440043******0178",
    Decimal("100"),
)


def make(gateway: FakeGateway) -> tuple[ChargeService, FakeStore, RecordingTelemetry]:
    store, telemetry = FakeStore(), RecordingTelemetry()
    service = ChargeUseCases.build(
        store=store,
        gateway=gateway,
        telemetry=telemetry,
        links=PublicLinks("https://pay.example/v1"),
        allocator=fake_allocator(),
        new_secret=lambda: "the-secret-hash",
    ).service
    return service, store, telemetry


def request(**overrides: object) -> ChargeRequest:
    fields: dict[str, object] = {
        "amount": Decimal("100.00"),
        "currency": "KZT",
        "card_id": "c0000000-0000-4000-8000-000000000001",
        "account_id": "customer-42",
        "description": "Order 42",
        "capture": CaptureMode.AUTO,
    }
    fields.update(overrides)
    return ChargeRequest(**fields)  # type: ignore[arg-type]


def deadline() -> Deadline:
    return Deadline.after(20)


def test_charge_is_stored_before_epay_is_called() -> None:
    # Given a gateway that looks into the store when the auth arrives
    seen: list[tuple[str, ChargeStatus]] = []
    gateway = FakeGateway(auth_outcome=AUTH)
    service, store, _ = make(gateway)
    gateway.on_authorize = lambda _req: seen.extend(
        (c.invoice_id, c.status) for c in store.charges.values()
    )
    # When a charge is created
    service.create_charge(request(), "key-1", deadline())
    # Then the charge, with the invoice id sent to ePay, was already PROCESSING in the store
    auth: AuthRequest = gateway.calls[1][1]
    assert seen == [(auth.invoice_id, ChargeStatus.PROCESSING)]
    assert store.keys["key-1"].resource_id in store.charges


def test_auto_capture_is_claimed_before_epay_then_recorded() -> None:
    # Given ePay authorises the card
    gateway = FakeGateway(auth_outcome=AUTH)
    service, store, telemetry = make(gateway)
    # When an auto-capture charge is created
    result = service.create_charge(request(), "key-1", deadline())
    # Then it is CAPTURED for the full amount after token, auth and capture
    charge = result.charge
    assert charge.status is ChargeStatus.CAPTURED
    assert charge.captured_amount == Decimal("100.00")
    assert charge.epay.transaction_id == "tx-1"
    assert gateway.ops() == ["token", "auth", "capture"]
    # And its history shows every step
    assert [(e.from_status, e.to_status) for e in store.history[charge.id]] == [
        (None, ChargeStatus.PROCESSING),
        (ChargeStatus.PROCESSING, ChargeStatus.AUTHORIZED),
        (ChargeStatus.AUTHORIZED, ChargeStatus.CAPTURED),
    ]
    # And the capture was claimed (AUTHORIZED, claim set) before ePay was asked, then cleared:
    # create + the claim + the capture (the invoice ring's counter is the allocator's)
    assert store.writes == 3
    assert charge.capture_claimed_at is None
    assert not charge.capture_pending
    assert telemetry.transitions[-1][1] == "CAPTURED"


def test_manual_capture_stays_authorized_then_captures_partially() -> None:
    # Given ePay authorises the card
    gateway = FakeGateway(auth_outcome=AUTH)
    service, _, _ = make(gateway)
    # When a manual-capture charge is created / Then the money is only held (AUTHORIZED)
    charge = service.create_charge(request(capture=CaptureMode.MANUAL), "k", deadline()).charge
    assert charge.status is ChargeStatus.AUTHORIZED
    assert gateway.ops() == ["token", "auth"]
    # When the merchant captures 60 of the 100 / Then ePay captures that part
    captured = service.capture_charge(charge.id, Decimal("60.00"), deadline())
    assert captured.status is ChargeStatus.CAPTURED
    assert captured.captured_amount == Decimal("60.00")
    assert gateway.calls[-1] == ("capture", ("tx-1", Decimal("60.00")))
    # When it captures again / Then it is a no-op that does not reach ePay
    again = service.capture_charge(charge.id, None, deadline())
    assert again.status is ChargeStatus.CAPTURED
    assert gateway.ops().count("capture") == 1


def test_single_stage_charge_is_captured_directly() -> None:
    # Given a single-stage terminal (ePay answers CHARGE) / When a charge is created
    gateway = FakeGateway(auth_outcome=AuthResult(GatewayStatus.CHARGE, "tx-9", "1", "r", "a", "m"))
    service, _, _ = make(gateway)
    charge = service.create_charge(request(), "k", deadline()).charge
    # Then it is CAPTURED with no separate capture call
    assert charge.status is ChargeStatus.CAPTURED
    assert gateway.ops() == ["token", "auth"]


def test_decline_keeps_code_message_and_category() -> None:
    # Given ePay declines for insufficient funds (484: final, and a soft decline as the adapter
    # reads it; the domain never reads code numbers itself)
    gateway = FakeGateway(
        auth_outcome=GatewayRejectedError(
            "Insufficient funds",
            operation="auth",
            gateway_code=484,
            http_status=400,
            decline_category="soft",
        )
    )
    service, _, _ = make(gateway)
    # When a charge is created
    charge = service.create_charge(request(), "k", deadline()).charge
    # Then it is DECLINED with ePay's code and message, as a soft decline
    assert charge.status is ChargeStatus.DECLINED
    assert charge.error is not None
    assert (charge.error.code, charge.error.category) == ("484", "soft")
    assert charge.error.message == "Insufficient funds"


def test_ambiguous_answer_leaves_unknown_and_never_resends() -> None:
    # Given the auth times out at ePay
    gateway = FakeGateway(auth_outcome=GatewayUnknownOutcomeError("timeout", operation="auth"))
    service, _, telemetry = make(gateway)
    # When a charge is created
    charge = service.create_charge(request(), "k", deadline()).charge
    # Then it is UNKNOWN with a check scheduled for the reconciler, and the auth went once
    assert charge.status is ChargeStatus.UNKNOWN
    assert charge.next_check_at is not None
    assert gateway.ops() == ["token", "auth"]
    assert telemetry.failures == ["GatewayUnknownOutcomeError"]
    # When the same request is replayed / Then it does not send the auth again either
    replay = service.create_charge(request(), "k", deadline())
    assert replay.replayed is True
    assert gateway.ops() == ["token", "auth"]


def test_3d_answer_keeps_what_the_3ds_step_needs() -> None:
    # Given ePay answers 3D for the auth
    gateway = FakeGateway(
        auth_outcome=AuthResult(
            GatewayStatus.THREE_DS,
            "tx-3",
            "1",
            secure3d=Secure3D("PAREQ", "MD", "https://acs.test/3ds"),
        )
    )
    service, _, _ = make(gateway)
    # When a charge is created
    charge = service.create_charge(request(), "k", deadline()).charge
    # Then it waits for 3DS, keeping the invoice's access token, the PaReq and the MD
    assert charge.status is ChargeStatus.REQUIRES_3DS
    assert charge.three_ds is not None
    assert charge.three_ds.access_token == "tok-secret-value"
    assert (charge.three_ds.pa_req, charge.three_ds.md) == ("PAREQ", "MD")


def test_token_failure_fails_the_charge_and_replays_the_503() -> None:
    # Given ePay's token endpoint is down
    gateway = FakeGateway(token_error=GatewayUnavailableError("down", operation="token"))
    service, store, _ = make(gateway)
    # When a charge is created / Then the caller gets "unavailable" and the charge is FAILED
    with pytest.raises(GatewayUnavailableError):
        service.create_charge(request(), "k", deadline())
    (charge,) = store.charges.values()
    assert charge.status is ChargeStatus.FAILED
    assert gateway.ops() == ["token"]
    # When the same key is retried / Then the same answer is replayed without calling ePay
    with pytest.raises(GatewayUnavailableError):
        service.create_charge(request(), "k", deadline())
    assert gateway.ops() == ["token"]


def test_same_key_replays_without_calling_epay() -> None:
    # Given a charge created with key "k"
    gateway = FakeGateway(auth_outcome=AUTH)
    service, _, _ = make(gateway)
    first = service.create_charge(request(), "k", deadline())
    # When the same request comes again with the same key
    second = service.create_charge(request(), "k", deadline())
    # Then the first charge is replayed and ePay saw one charge only
    assert second.replayed is True
    assert second.charge == first.charge
    assert gateway.ops() == ["token", "auth", "capture"]


def test_same_key_with_another_body_is_refused() -> None:
    # Given a charge created with key "k"
    gateway = FakeGateway(auth_outcome=AUTH)
    service, _, _ = make(gateway)
    service.create_charge(request(), "k", deadline())
    # When the key is reused for another amount / Then it is refused
    with pytest.raises(IdempotencyMismatchError):
        service.create_charge(request(amount=Decimal("101.00")), "k", deadline())


def test_same_key_while_in_flight_is_a_conflict() -> None:
    # Given a first request that is still waiting for ePay
    gateway = FakeGateway(auth_outcome=AUTH)
    service, _, _ = make(gateway)
    answers: list[type[Exception]] = []

    def second_request_arrives(_: AuthRequest) -> None:
        try:
            service.create_charge(request(), "k", deadline())
        except IdempotencyInFlightError as exc:
            answers.append(type(exc))

    gateway.on_authorize = second_request_arrives
    # When the same key arrives meanwhile / Then it is told to wait, and ePay saw one auth
    service.create_charge(request(), "k", deadline())
    assert answers == [IdempotencyInFlightError]
    assert gateway.ops().count("auth") == 1


def test_merchant_invoice_id_must_be_unused() -> None:
    # Given a charge with the merchant's invoice id 123456789
    gateway = FakeGateway(auth_outcome=AUTH)
    service, _, _ = make(gateway)
    service.create_charge(request(invoice_id="123456789"), "k1", deadline())
    # When another key asks for the same invoice id / Then it is a conflict, never sent to ePay
    with pytest.raises(ConflictError):
        service.create_charge(request(invoice_id="123456789"), "k2", deadline())
    assert gateway.ops().count("auth") == 1


def test_allocated_invoice_ids_are_zero_padded_digits() -> None:
    # Given no invoice id from the merchant / When the first charge is created
    gateway = FakeGateway(auth_outcome=AUTH)
    service, _, _ = make(gateway)
    charge = service.create_charge(request(), "k", deadline()).charge
    # Then it gets a nine-digit id of the terminal's first lap and lane, and records the terminal
    assert re.fullmatch(r"000[0-9]{6}", charge.invoice_id)
    assert charge.terminal_id == "terminal-1"
    assert gateway.calls[0][1].terminal_id == "terminal-1"


def test_only_the_digest_of_secret_hash_is_kept_and_links_point_at_us() -> None:
    # Given a new secret_hash per charge / When a charge is created
    gateway = FakeGateway(auth_outcome=AUTH)
    service, _, _ = make(gateway)
    charge = service.create_charge(request(), "k", deadline()).charge
    # Then ePay gets the secret itself, led by the charge's id (the postLink's way to it), and
    # the charge keeps only its digest
    token_request = gateway.calls[0][1]
    assert token_request.secret_hash == f"{charge.id}the-secret-hash"
    assert charge_id_hint(token_request.secret_hash) == charge.id
    assert charge.secret_hash_digest == secret_hash_digest(token_request.secret_hash)
    assert "the-secret-hash" not in repr(charge)
    # And ePay's postLink points at our API
    assert token_request.post_link == "https://pay.example/v1/epay/postlink"


def test_capture_refused_for_non_authorized_charges() -> None:
    # Given a charge ePay declined (stolen card)
    gateway = FakeGateway(
        auth_outcome=GatewayRejectedError("x", operation="auth", gateway_code=483)
    )
    service, _, _ = make(gateway)
    charge = service.create_charge(request(), "k", deadline()).charge
    # When the merchant captures it / Then the transition is refused
    with pytest.raises(InvalidTransitionError):
        service.capture_charge(charge.id, None, deadline())


def test_failed_auto_capture_leaves_authorized_for_the_reconciler() -> None:
    # Given ePay authorises but the auto capture times out
    gateway = FakeGateway(
        auth_outcome=AUTH, capture_error=GatewayUnknownOutcomeError("t", operation="capture")
    )
    service, _, _ = make(gateway)
    # When a charge is created
    charge = service.create_charge(request(), "k", deadline()).charge
    # Then the money is held (AUTHORIZED) and a reconciler check is scheduled
    assert charge.status is ChargeStatus.AUTHORIZED
    assert charge.next_check_at is not None
