"""The operator's resolution of a NEEDS_REVIEW charge (payments.charges.resolution): what may be
asked, what ePay's status API must say for it, what the one write records; and what a replay
verifies (a stored notification's kept secret digest). In-memory fakes, no sockets."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from payments.charges.model import (
    TRANSITIONS,
    Charge,
    ChargeStatus,
    HistoryEntry,
    Source,
    secret_hash_digest,
)
from payments.charges.notifications import Notification, parse_notification, verify
from payments.charges.payment_gateway import StatusResult, TransactionStatus
from payments.charges.resolution import (
    RESOLVABLE,
    ChargeResolutions,
    Resolution,
    confirmation,
    operator_of,
    parse_resolution,
)
from payments.charges.terminals import TerminalNames
from payments.charges.transitions import ChargeTransitions
from payments.errors import (
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
    InvalidTransitionError,
    NotFoundError,
    ResolutionContradictedError,
    ResolutionUnconfirmedError,
    UnidentifiedCallerError,
    ValidationError,
)
from payments.shared.deadline import Deadline
from tests.fakes import TEST_NOW, FakeGateway, FakeStore, RecordingTelemetry, make_charge

S = ChargeStatus
OPERATOR = "arn:aws:sts::123456789012:assumed-role/payments-operator/alice"
NOTE = "Checked ePay's cabinet: CHARGE 1500.50 KZT"


def answer(name: str, amount: str | None = "1500.50", **fields: Any) -> StatusResult:
    """A status answer with a transaction in ePay's status `name`."""
    tx = TransactionStatus(
        transaction_id="tx-1",
        invoice_id="000000042",
        status_name=name,
        amount=None if amount is None else Decimal(amount),
        currency="KZT",
        reference="000123456789",
        approval_code="123456",
        card_mask="440043******0001",
        reason=fields.pop("reason", None),
        reason_code=fields.pop("reason_code", None),
        **fields,
    )
    return StatusResult("100", "OK", tx)


NOT_FOUND = StatusResult("102", "no such invoice", None)


class Charges:
    """The FakeStore seen through the ChargeHistory port (get, history)."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def get(self, charge_id: str) -> Charge | None:
        return self.store.get(charge_id)

    def history(self, charge_id: str) -> list[HistoryEntry]:
        return list(self.store.history.get(charge_id, []))


def under_review(store: FakeStore, **changes: Any) -> Charge:
    """A charge that ended DECLINED here and was then sent to review."""
    charge = make_charge(status=S.NEEDS_REVIEW, **changes)
    store.charges[charge.id] = charge
    store.history[charge.id] = [
        HistoryEntry(None, S.PROCESSING, TEST_NOW, Source.API),
        HistoryEntry(S.PROCESSING, S.DECLINED, TEST_NOW, Source.API, "484"),
        HistoryEntry(S.DECLINED, S.NEEDS_REVIEW, TEST_NOW, Source.POSTLINK, "status API: CHARGE"),
    ]
    return charge


def resolutions(
    store: FakeStore, *answers: StatusResult | Exception
) -> tuple[ChargeResolutions, FakeGateway]:
    gateway = FakeGateway(status_answers=list(answers))  # type: ignore[arg-type]
    writer = ChargeTransitions(store=store, telemetry=RecordingTelemetry(), clock=lambda: TEST_NOW)
    return ChargeResolutions(charges=Charges(store), gateway=gateway, transitions=writer), gateway


def deadline() -> Deadline:
    return Deadline.after(10)


# ------------------------------------------------------------------------------ the request


def test_resolvable_statuses_are_exactly_what_needs_review_may_become() -> None:
    # Given the state machine / Then an operator may ask for exactly NEEDS_REVIEW's targets
    assert TRANSITIONS[S.NEEDS_REVIEW] == RESOLVABLE
    assert S.NEEDS_REVIEW not in RESOLVABLE
    assert S.PROCESSING not in RESOLVABLE
    assert S.UNKNOWN not in RESOLVABLE


@pytest.mark.parametrize("status", sorted(s.value for s in RESOLVABLE))
def test_a_valid_body_reads_into_a_resolution(status: str) -> None:
    # Given a body naming a resolvable status and a note / When it is read
    resolution = parse_resolution({"status": status, "note": NOTE})
    # Then it is that status and note
    assert resolution == Resolution(S(status), NOTE)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"status": "PROCESSING", "note": NOTE}, {"status"}),
        ({"status": "NEEDS_REVIEW", "note": NOTE}, {"status"}),
        ({"status": "captured", "note": NOTE}, {"status"}),
        ({"status": ["CAPTURED"], "note": NOTE}, {"status"}),
        ({"note": NOTE}, {"status"}),
        ({"status": "CAPTURED"}, {"note"}),
        ({"status": "CAPTURED", "note": ""}, {"note"}),
        ({"status": "CAPTURED", "note": "   "}, {"note"}),
        ({"status": "CAPTURED", "note": "x" * 501}, {"note"}),
        ({"status": "CAPTURED", "note": "line\nbreak"}, {"note"}),
        ({"status": "CAPTURED", "note": "lone \ud800"}, {"note"}),
        ({"status": "CAPTURED", "note": 42}, {"note"}),
        ({"status": "CAPTURED", "note": NOTE, "amount": 1}, {"amount"}),
        ({}, {"status", "note"}),
    ],
)
def test_a_bad_body_names_every_bad_field(body: dict[str, Any], fields: set[str]) -> None:
    # Given a body with bad or missing fields / When it is read / Then each is named
    with pytest.raises(ValidationError) as raised:
        parse_resolution(body)
    assert set(raised.value.fields) == fields


@pytest.mark.parametrize("body", [None, [], "CAPTURED", 1])
def test_a_body_that_is_not_an_object_is_refused(body: Any) -> None:
    with pytest.raises(ValidationError):
        parse_resolution(body)


def test_a_note_of_500_characters_is_the_longest_allowed() -> None:
    assert parse_resolution({"status": "FAILED", "note": "é" * 500}).note == "é" * 500


@pytest.mark.parametrize("caller", [None, "", "  ", "arn\n:x"])
def test_an_action_without_a_caller_is_refused(caller: str | None) -> None:
    with pytest.raises(UnidentifiedCallerError) as raised:
        operator_of(caller)
    assert raised.value.http_status == 403


# ------------------------------------------------------------------------------ ePay's word


@pytest.mark.parametrize(
    ("gateway", "status"),
    [
        ("CHARGE", S.CAPTURED),
        ("AUTH", S.AUTHORIZED),
        ("CANCEL", S.CANCELLED),
        ("CANCEL_OLD", S.EXPIRED),
        ("REFUND", S.REFUNDED),
        ("REJECT", S.DECLINED),
        ("FAILED", S.DECLINED),
    ],
)
def test_the_status_api_confirms_what_settlement_reads_its_status_as(
    gateway: str, status: ChargeStatus
) -> None:
    # Given ePay's final status / Then it confirms exactly the status SETTLES_AS makes of it
    assert confirmation(status, answer(gateway)).startswith(f"status API: {gateway}")
    for other in RESOLVABLE - {status}:
        with pytest.raises(ResolutionContradictedError) as raised:
            confirmation(other, answer(gateway))
        assert raised.value.code == "resolution_contradicted"
        assert raised.value.http_status == 409
        assert raised.value.gateway_status == gateway


@pytest.mark.parametrize("status", [S.FAILED, S.DECLINED])
def test_no_such_invoice_confirms_only_that_nothing_was_taken(status: ChargeStatus) -> None:
    assert confirmation(status, NOT_FOUND) == "status API: no such invoice"


@pytest.mark.parametrize("status", sorted(RESOLVABLE - {S.FAILED, S.DECLINED}))
def test_no_such_invoice_contradicts_any_status_with_money(status: ChargeStatus) -> None:
    with pytest.raises(ResolutionContradictedError):
        confirmation(status, NOT_FOUND)


@pytest.mark.parametrize(
    "pending",
    [
        answer("NEW"),
        answer("3D"),
        answer("FINGERPRINT"),
        answer("SOMETHING_NEW"),
        StatusResult("107", "In progress", None),
        StatusResult("100", "OK", None),
    ],
)
def test_a_pending_or_unreadable_answer_confirms_nothing(pending: StatusResult) -> None:
    with pytest.raises(ResolutionUnconfirmedError) as raised:
        confirmation(S.CAPTURED, pending)
    assert (raised.value.code, raised.value.http_status) == ("resolution_unconfirmed", 409)


def test_a_verified_card_is_no_charge_status() -> None:
    with pytest.raises(ResolutionContradictedError):
        confirmation(S.CAPTURED, answer("VERIFIED"))


# ------------------------------------------------------------------------------ the use case


def test_a_confirmed_resolution_is_one_audited_write() -> None:
    # Given a NEEDS_REVIEW charge and ePay saying CHARGE
    store = FakeStore()
    charge = under_review(store)
    service, gateway = resolutions(store, answer("CHARGE"))

    # When an operator resolves it CAPTURED
    resolved = service.resolve(charge.id, Resolution(S.CAPTURED, NOTE), OPERATOR, deadline())

    # Then one write moved it, with ePay's reference and what was taken
    assert resolved.status is S.CAPTURED
    assert resolved.captured_amount == Decimal("1500.50")
    assert resolved.epay.reference == "000123456789"
    assert resolved.version == charge.version + 1
    assert store.writes == 1
    assert gateway.ops() == ["status"]
    # And its history names the operator, the note and what ePay said
    last = store.history[charge.id][-1]
    assert (last.from_status, last.to_status, last.source) == (
        S.NEEDS_REVIEW,
        S.CAPTURED,
        Source.OPERATOR,
    )
    assert OPERATOR in last.detail
    assert NOTE in last.detail
    assert "CHARGE" in last.detail


def test_resolving_again_to_the_same_status_answers_the_charge_without_asking_epay() -> None:
    # Given a charge an operator resolved CAPTURED
    store = FakeStore()
    charge = under_review(store)
    service, gateway = resolutions(store, answer("CHARGE"))
    first = service.resolve(charge.id, Resolution(S.CAPTURED, NOTE), OPERATOR, deadline())

    # When the same resolution comes again / Then the charge is answered, nothing changes
    again = service.resolve(charge.id, Resolution(S.CAPTURED, "again"), OPERATOR, deadline())
    assert again == first
    assert store.writes == 1
    assert gateway.ops() == ["status"]
    # And another status is refused: the charge is no longer under review
    with pytest.raises(InvalidTransitionError):
        service.resolve(charge.id, Resolution(S.DECLINED, NOTE), OPERATOR, deadline())


def test_a_charge_that_was_never_under_review_is_not_resolved() -> None:
    # Given a CAPTURED charge that reached it through the API
    store = FakeStore()
    charge = make_charge(status=S.CAPTURED)
    store.charges[charge.id] = charge
    store.history[charge.id] = [HistoryEntry(S.PROCESSING, S.CAPTURED, TEST_NOW, Source.API)]
    service, gateway = resolutions(store)

    # When an operator "resolves" it to what it is / Then it is refused, ePay is not asked
    with pytest.raises(InvalidTransitionError) as raised:
        service.resolve(charge.id, Resolution(S.CAPTURED, NOTE), OPERATOR, deadline())
    assert (raised.value.code, raised.value.http_status) == ("invalid_state", 409)
    assert gateway.ops() == []
    assert store.writes == 0


@pytest.mark.parametrize(
    "failure",
    [
        GatewayUnavailableError("down", operation="status"),
        GatewayUnknownOutcomeError("5xx", operation="status"),
    ],
)
def test_epay_not_answering_is_503_and_changes_nothing(failure: Exception) -> None:
    store = FakeStore()
    charge = under_review(store)
    service, _ = resolutions(store, failure)
    with pytest.raises(GatewayUnavailableError) as raised:
        service.resolve(charge.id, Resolution(S.CAPTURED, NOTE), OPERATOR, deadline())
    assert (raised.value.code, raised.value.http_status) == ("gateway_unavailable", 503)
    assert store.charges[charge.id] == charge
    assert store.writes == 0


def test_a_contradicted_resolution_changes_nothing() -> None:
    store = FakeStore()
    charge = under_review(store)
    service, _ = resolutions(store, answer("CHARGE"))
    with pytest.raises(ResolutionContradictedError):
        service.resolve(charge.id, Resolution(S.DECLINED, NOTE), OPERATOR, deadline())
    assert store.charges[charge.id] == charge
    assert len(store.history[charge.id]) == 3


def test_a_failed_resolution_of_an_invoice_epay_never_saw_records_why() -> None:
    store = FakeStore()
    charge = under_review(store)
    service, _ = resolutions(store, NOT_FOUND)
    resolved = service.resolve(charge.id, Resolution(S.FAILED, NOTE), OPERATOR, deadline())
    assert resolved.status is S.FAILED
    assert resolved.error is not None
    assert resolved.error.code == "not_attempted"


def test_a_declined_resolution_keeps_epays_reason() -> None:
    store = FakeStore()
    charge = under_review(store)
    service, _ = resolutions(store, answer("REJECT", reason="Insufficient funds", reason_code=484))
    resolved = service.resolve(charge.id, Resolution(S.DECLINED, NOTE), OPERATOR, deadline())
    assert resolved.error is not None
    assert (resolved.error.code, resolved.error.message) == ("484", "Insufficient funds")


def test_a_capture_of_part_of_the_charge_records_what_epay_took() -> None:
    store = FakeStore()
    charge = under_review(store)
    service, _ = resolutions(store, answer("CHARGE", "1000.00"))
    resolved = service.resolve(charge.id, Resolution(S.CAPTURED, NOTE), OPERATOR, deadline())
    assert resolved.captured_amount == Decimal("1000.00")


def test_an_unknown_charge_is_404() -> None:
    service, _ = resolutions(FakeStore())
    with pytest.raises(NotFoundError):
        service.resolve("ch_" + "0" * 32, Resolution(S.CAPTURED, NOTE), OPERATOR, deadline())


def test_a_lost_race_to_the_same_resolution_answers_the_winner() -> None:
    # Given two operators resolving the same charge CAPTURED, the other one first
    store = FakeStore()
    charge = under_review(store)
    service, gateway = resolutions(store, answer("CHARGE"), answer("CHARGE"))
    original_status = gateway.status

    def status_then_race(invoice_id: str, terminal_id: str, when: Deadline) -> StatusResult:
        result = original_status(invoice_id, terminal_id, when)
        if len(gateway.calls) == 1:  # the other operator's write lands in between
            other, _ = resolutions(store, answer("CHARGE"))
            other.resolve(charge.id, Resolution(S.CAPTURED, "other"), "other-arn", when)
        return result

    gateway.status = status_then_race  # type: ignore[method-assign]

    # When this one's conditional write loses / Then it answers the winner's charge
    resolved = service.resolve(charge.id, Resolution(S.CAPTURED, NOTE), OPERATOR, deadline())
    assert resolved.status is S.CAPTURED
    assert [e.detail.split(":")[0] for e in store.history[charge.id][3:]] == ["by other-arn"]


# ------------------------------------------------------------------------------ a replay


def _charge_notification(secret: str | None) -> bytes:
    fields = {"invoiceId": "000000042", "amount": "1500.50", "currency": "KZT", "code": "ok"}
    if secret is not None:
        fields["secret_hash"] = secret
    return json.dumps(fields).encode()


@pytest.mark.parametrize(("offered", "authentic"), [("the-secret", True), ("guessed", False)])
def test_a_stored_notification_verifies_by_its_kept_digest_as_a_delivery_does(
    offered: str, authentic: bool
) -> None:
    # Given a charge whose secret_hash is "the-secret", and a notification as first delivered
    charge = make_charge(secret_hash_digest=secret_hash_digest("the-secret"))
    delivered = parse_notification(_charge_notification(offered), "application/json")

    # When it is read back from the inbox (its fields and its secret's digest, no secret)
    stored = Notification.stored(delivered.kept, secret_hash_digest(offered))

    # Then it carries no secret, and verification reaches the same verdict as on delivery
    assert stored.secret_hash is None
    names = TerminalNames(charge.terminal_id or "terminal-1", None)
    assert verify(stored, charge, names) == verify(delivered, charge, names)
    assert (verify(stored, charge, names) == ()) is authentic


def test_a_stored_notification_without_a_secret_is_forged() -> None:
    charge = make_charge(secret_hash_digest=secret_hash_digest(""))
    delivered = parse_notification(_charge_notification(None), "application/json")
    stored = Notification.stored(delivered.kept, None)
    names = TerminalNames("terminal-1", None)
    assert "secret_hash" in verify(stored, charge, names)
