"""postLink intake without sockets: parsing, masking, verification and the use case on fakes."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from payments.charges.inbox_records import (
    InboxRecord,
    PostLinkOutcome,
    StoredVerdict,
    Verdict,
    inbox_id_for,
    is_inbox_id,
    split_inbox_id,
)
from payments.charges.model import (
    Charge,
    ChargeStatus,
    EpayRef,
    charge_id_hint,
    charge_secret_hash,
    secret_hash_digest,
)
from payments.charges.notifications import (
    MAX_NOTIFICATION_BYTES,
    Delivery,
    Route,
    body_bytes,
    parse_notification,
    verify,
)
from payments.charges.payment_gateway import StatusResult, TransactionStatus
from payments.charges.postlink import PostLinkService
from payments.charges.settlement import Settlement
from payments.charges.terminals import TerminalNames
from payments.errors import (
    ForgedNotificationError,
    GatewayUnknownOutcomeError,
    PayloadTooLargeError,
    ValidationError,
)
from payments.shared.deadline import Deadline
from tests.fakes import make_charge

SECRET = "s3cret-value-chosen-for-this-charge"
TERMINAL = "67e34d63-102f-4bd1-898e-370781d0074d"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CHARGE = make_charge(
    status=ChargeStatus.UNKNOWN,
    secret_hash_digest=secret_hash_digest(SECRET),
)
PAYLOAD: dict[str, Any] = {
    "id": "tx-1",
    "invoiceId": "000000042",
    "amount": 1500.5,
    "currency": "KZT",
    "terminal": TERMINAL,
    "code": "ok",
    "reasonCode": 0,
    "secret_hash": SECRET,
    "ipCity": "ALMATY",
    "somethingNew": {"nested": True},
}


def raw(**changes: Any) -> bytes:
    return json.dumps({**PAYLOAD, **changes}).encode()


# ------------------------------------------------------------------------------ parsing


def test_json_notification_is_parsed_tolerantly() -> None:
    # Given ePay's JSON postLink with fields we do not know / When it is parsed
    n = parse_notification(raw(), "application/json")
    # Then the fields we check are read, and the secret never shows in its repr
    assert n.invoice_id == "000000042"
    assert n.amount == Decimal("1500.5")
    assert n.currency == "KZT"
    assert n.terminal == TERMINAL
    assert n.secret_hash == SECRET
    assert n.code == "ok"
    assert n.reason_code == 0
    assert SECRET not in repr(n)


@pytest.mark.parametrize(
    ("value", "expected"), [(484, 484), ("484", 484), (" 484 ", 484), ("n/a", None), (None, None)]
)
def test_reason_code_as_number_or_string(value: Any, expected: int | None) -> None:
    # Given a reasonCode as a number, a string, garbage or null / Then it is a number or nothing
    assert parse_notification(raw(reasonCode=value), None).reason_code == expected


def test_form_body_and_any_key_case_and_a_wrong_content_type_are_accepted() -> None:
    # Given a form-encoded postLink with odd key case, sent as text/plain / When it is parsed
    form = "INVOICEID=000000042&amount=1500.50&currency=kzt&terminal=T&secret_hash=a%2Bb&x="
    n = parse_notification(form.encode(), "text/plain")
    # Then its fields are read (currency upper-cased, the secret URL-decoded)
    assert (n.invoice_id, n.amount, n.currency, n.terminal) == (
        "000000042",
        Decimal("1500.50"),
        "KZT",
        "T",
    )
    assert n.secret_hash == "a+b"
    # Given a JSON body labelled as a form / Then it is still read as JSON
    assert parse_notification(raw(), "application/x-www-form-urlencoded").invoice_id == "000000042"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"", set()),
        (b"\xff\xfe", set()),
        (b"{nope", set()),
        (b"[1, 2]", set()),
        (b"hello world", set()),
        (raw(invoiceId="42"), {"invoiceId"}),
        (
            raw(invoiceId=None, amount="x", currency="TENGE", terminal="x" * 300),
            {"invoiceId", "amount", "currency", "terminal"},
        ),
        (raw(amount=-1), {"amount"}),
        (b'{"invoiceId": "000000042", "amount": NaN}', set()),
    ],
)
def test_malformed_bodies_name_what_is_wrong(body: bytes, fields: set[str]) -> None:
    # Given an unreadable body, or one with bad fields / When it is parsed
    # Then it is refused, naming the bad fields (none when the body as a whole is unreadable)
    with pytest.raises(ValidationError) as caught:
        parse_notification(body, "application/json")
    assert set(caught.value.fields) == fields


CARD_ID = "c0000000-0000-4000-8000-000000000001"
PRIVATE = {
    "email": "ivan@example.kz",
    "phone": "77001234567",
    "name": "IVAN PETROV",
    "accountId": "customer-42",
    "ip": "203.0.113.7",
    "ipCountry": "XQ",
    "ipLatitude": "43.2",
    "ipLongitude": "76.9",
}


@pytest.mark.parametrize("secret", [SECRET, [SECRET], {"value": SECRET}, 12345678901234])
def test_only_what_audit_needs_is_kept_whatever_the_secrets_type(secret: Any) -> None:
    # Given ePay's postLink with the payer's contacts, location, a full card id, and a
    # secret_hash that may come as a string, a list, an object or a number
    body = raw(**PRIVATE, cardId=CARD_ID, cardMask="440043******0178", secret_hash=secret)
    # When it is parsed for the inbox
    kept = parse_notification(body, "application/json").kept
    # Then ePay's facts are kept, the card id masked like everywhere else
    assert kept["invoiceId"] == "000000042"
    assert kept["amount"] == "1500.5"
    assert kept["cardMask"] == "440043******0178"
    assert kept["cardId"] == "****0001"
    # And nothing else: no secret in any form, no contacts, no location, no account id
    text = json.dumps(kept)
    assert "secret" not in text.lower()
    assert SECRET not in text
    assert CARD_ID not in text
    for name, value in PRIVATE.items():
        assert name not in kept
        assert value not in text


def test_body_bytes_decodes_base64_and_refuses_huge_bodies_early() -> None:
    # Given API Gateway's body, base64 encoded, plain or absent / Then its bytes are read
    assert body_bytes(base64.b64encode(b"\x00\x01").decode(), True) == b"\x00\x01"
    assert body_bytes("plain", False) == b"plain"
    assert body_bytes(None, False) == b""
    # Given a body far over the limit / Then it is refused before decoding
    with pytest.raises(PayloadTooLargeError):
        body_bytes("x" * (MAX_NOTIFICATION_BYTES * 2 + 1), False)


# ------------------------------------------------------------------------------ verification


def test_genuine_notification_verifies() -> None:
    # Given a postLink matching the charge (terminal id in any case) / Then nothing mismatches
    assert verify(parse_notification(raw(), None), CHARGE, TerminalNames(TERMINAL.upper())) == ()


@pytest.mark.parametrize(
    ("changes", "mismatched"),
    [
        ({"secret_hash": "wrong"}, ("secret_hash",)),
        ({"secret_hash": None}, ("secret_hash",)),
        ({"amount": "1500.51"}, ("amount",)),
        ({"currency": "USD"}, ("currency",)),
        ({"terminal": "other"}, ("terminal",)),
        ({"invoiceId": "000000043", "amount": 1}, ("invoiceId", "amount")),
    ],
)
def test_every_mismatch_is_named(changes: dict[str, Any], mismatched: tuple[str, ...]) -> None:
    # Given a postLink differing from the charge / Then each differing field is named
    notification = parse_notification(raw(**changes), None)
    assert verify(notification, CHARGE, TerminalNames(TERMINAL)) == mismatched


# ------------------------------------------------------------------------------ the use case


def stored_id(body: bytes, invoice_id: str = "000000042") -> str:
    """The inbox id a notification of `invoice_id` with this exact body is kept under."""
    return inbox_id_for(invoice_id, hashlib.sha256(body).hexdigest())


@dataclass
class FakeInbox:
    """Records by inbox id (`<invoiceId>.<digest>`), as payments.aws.inbox keys them."""

    records: dict[str, InboxRecord] = field(default_factory=dict)
    verdicts: dict[str, StoredVerdict] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def keep(
        self, record: InboxRecord, *, charge_id: str | None, detail: str
    ) -> StoredVerdict | None:
        key = inbox_id_for(record.invoice_id, record.digest)
        if key in self.records:
            self.calls.append("seen_again")
            stored = self.verdicts[key]
            self.verdicts[key] = replace(stored, deliveries=stored.deliveries + 1)
            return stored
        self.calls.append("put" if record.verdict is Verdict.RECEIVED else f"put:{record.verdict}")
        self.records[key] = record
        self.verdicts[key] = StoredVerdict(record.verdict, 1, record.received_at, charge_id, detail)
        return None

    def record_verdict(
        self, inbox_id: str, verdict: Verdict, at: datetime, *, charge_id: str | None, detail: str
    ) -> None:
        self.calls.append(f"verdict:{verdict.value}")
        stored = self.verdicts[inbox_id]
        self.verdicts[inbox_id] = StoredVerdict(
            verdict, stored.deliveries, stored.received_at, charge_id, detail
        )


@dataclass
class FakeCharges:
    inbox: FakeInbox
    charges: dict[str, Charge] = field(default_factory=lambda: {CHARGE.invoice_id: CHARGE})

    def get_by_invoice(self, invoice_id: str) -> Charge | None:
        self.inbox.calls.append("lookup")
        return self.charges.get(invoice_id)

    def get(self, charge_id: str) -> Charge | None:
        self.inbox.calls.append("get")
        return next((c for c in self.charges.values() if c.id == charge_id), None)


def answer(terminal_code: str | None = "98120001", terminal_id: str = TERMINAL) -> StatusResult:
    """The status API's answer for CHARGE, naming the terminal by both names."""
    tx = TransactionStatus(
        "tx-1", CHARGE.invoice_id, "CHARGE", CHARGE.amount, "KZT", "rrn", "ap", None, None, 0,
        terminal_id=terminal_id, terminal_code=terminal_code,
    )  # fmt: skip
    return StatusResult("100", "SUCCESS", tx)


@dataclass
class FakeSettler:
    outcome: str | Exception = "changed"
    status: StatusResult = field(default_factory=answer)
    deadlines: list[float] = field(default_factory=list)
    applied: int = 0

    def settle_charge(
        self,
        charge: Charge,
        source: str,
        deadline: Deadline,
        vet: Callable[[StatusResult], None] | None = None,
    ) -> Settlement:
        assert source == "postlink"
        self.deadlines.append(deadline.remaining())
        if isinstance(self.outcome, Exception):
            raise self.outcome
        if vet is not None:
            vet(self.status)
        self.applied += 1
        return Settlement(replace(CHARGE, status=ChargeStatus.CAPTURED), self.outcome)


@dataclass
class FakeTerminals:
    """TerminalCodes over a dict: the UUID, and a code once learned."""

    code: str | None = None
    learned: list[str] = field(default_factory=list)

    def names(self, charge_terminal: str) -> TerminalNames:
        return TerminalNames(charge_terminal or TERMINAL, self.code)

    def learn(self, transaction: TransactionStatus | None, charge_terminal: str) -> str | None:
        if self.code is None and transaction is not None and transaction.terminal_code:
            self.code = transaction.terminal_code
            self.learned.append(self.code)
        return self.code


@dataclass
class FakeTelemetry:
    outcomes: list[PostLinkOutcome] = field(default_factory=list)

    def handled(self, outcome: PostLinkOutcome) -> None:
        self.outcomes.append(outcome)


@dataclass
class World:
    inbox: FakeInbox
    settler: FakeSettler
    telemetry: FakeTelemetry
    service: PostLinkService
    terminals: FakeTerminals
    charges: FakeCharges

    def receive(self, body: bytes, route: Route = Route.SUCCESS, seconds: float = 27.0) -> Any:
        return self.service.receive(
            Delivery(body, "application/json", route, "203.0.113.9"), Deadline.after(seconds)
        )


@pytest.fixture
def world() -> World:
    inbox = FakeInbox()
    settler = FakeSettler()
    telemetry = FakeTelemetry()
    terminals = FakeTerminals()
    service_charges = FakeCharges(inbox)
    service = PostLinkService(
        inbox=inbox,
        charges=service_charges,
        settler=settler,
        terminals=terminals,
        telemetry=telemetry,
        clock=lambda: NOW,
    )
    return World(inbox, settler, telemetry, service, terminals, service_charges)


def test_store_first_then_verify_then_settle_within_the_budget(world: World) -> None:
    # Given a genuine postLink with 27 s left / When it is received
    outcome = world.receive(raw())
    # Then the charge is read, the notification stored, the charge read again and settled
    # CAPTURED from the status API (it was UNKNOWN), and the verdict recorded
    assert outcome.verdict is Verdict.SETTLED
    assert outcome.status is ChargeStatus.CAPTURED
    assert world.inbox.calls == ["lookup", "put", "get", "verdict:settled"]
    # And the settle deadline is capped at 8 s even with 27 s left
    assert 7.0 < world.settler.deadlines[0] <= 8.0
    # And the stored copy keeps only the secret's digest
    (record,) = world.inbox.records.values()
    assert SECRET not in json.dumps(dict(record.notification))
    assert record.notification["invoiceId"] == "000000042"
    assert record.secret_hash_digest == secret_hash_digest(SECRET)
    assert record.route is Route.SUCCESS


def test_short_remaining_time_wins_over_the_budget(world: World) -> None:
    # Given only 2 s left / When a postLink is received / Then settling gets at most those 2 s
    world.receive(raw(), seconds=2.0)
    assert world.settler.deadlines[0] <= 2.0


def test_replay_of_a_final_verdict_is_answered_without_settling(world: World) -> None:
    # Given ePay delivers the same postLink five times
    # When each copy is received / Then each is answered SETTLED
    for _ in range(5):
        assert world.receive(raw()).verdict is Verdict.SETTLED
    # And only the first was settled; the others were told as duplicates and counted
    assert len(world.settler.deadlines) == 1
    assert [o.duplicate for o in world.telemetry.outcomes] == [False, True, True, True, True]
    assert next(iter(world.inbox.verdicts.values())).deliveries == 5


def test_gateway_failure_defers_and_a_later_copy_is_handled_again(world: World) -> None:
    # Given the status API times out while settling / When a postLink is received
    world.settler.outcome = GatewayUnknownOutcomeError("slow", operation="status")
    # Then it is DEFERRED
    assert world.receive(raw()).verdict is Verdict.DEFERRED
    # When ePay sends the same postLink again and the status API answers
    world.settler.outcome = "changed"
    # Then the copy is settled (a second attempt)
    assert world.receive(raw()).verdict is Verdict.SETTLED
    assert len(world.settler.deadlines) == 2


def test_pending_status_is_not_final(world: World) -> None:
    # Given ePay's status is still pending / When a postLink is received / Then it is PENDING
    world.settler.outcome = "pending"
    assert world.receive(raw()).verdict is Verdict.PENDING
    # When a copy arrives / Then it is settled again (a pending verdict is not final)
    world.receive(raw())
    assert len(world.settler.deadlines) == 2


# --- the common case: the postLink tells of what the charge already holds

HINTED_ID = "ch_" + "ab" * 16
HINTED_SECRET = charge_secret_hash(HINTED_ID, "random-part")


def settled_world(world: World, status: ChargeStatus, **changes: Any) -> Charge:
    """The world's charge, read by the id its secret_hash begins with, in `status`."""
    fields: dict[str, Any] = {
        "id": HINTED_ID,
        "status": status,
        "secret_hash_digest": secret_hash_digest(HINTED_SECRET),
        "epay": EpayRef("tx-1", "rrn", "ap", "4400****0001"),
        **changes,
    }
    charge = replace(CHARGE, **fields)
    world.charges.charges[charge.invoice_id] = charge
    return charge


def test_the_secret_hash_names_the_charge_only_as_a_hint() -> None:
    # Given a charge's secret_hash / Then its id leads it; a secret of another shape names none
    assert charge_id_hint(HINTED_SECRET) == HINTED_ID
    assert charge_id_hint(SECRET) is None
    assert charge_id_hint(None) is None
    assert charge_id_hint("ch_" + "ab" * 15) is None


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (ChargeStatus.CAPTURED, "ok"),
        (ChargeStatus.AUTHORIZED, "ok"),
        (ChargeStatus.REFUNDED, "ok"),
        (ChargeStatus.CANCELLED, "ok"),
        (ChargeStatus.DECLINED, "error"),
    ],
)
def test_a_postlink_agreeing_with_the_charge_costs_one_read_and_one_write(
    world: World, status: ChargeStatus, code: str
) -> None:
    # Given a charge already settled as the notification says
    settled_world(world, status)
    # When its postLink arrives
    outcome = world.receive(raw(secret_hash=HINTED_SECRET, code=code))
    # Then the charge was read by id, the notification stored with its verdict in one write,
    # and ePay's status API was not asked
    assert world.inbox.calls == ["get", "put:settled"]
    assert world.settler.deadlines == []
    assert outcome.verdict is Verdict.SETTLED
    assert outcome.detail == f"agrees: {status.value}"
    assert (
        world.inbox.verdicts[stored_id(raw(secret_hash=HINTED_SECRET, code=code))].charge_id
        == HINTED_ID
    )
    # When the same body comes again / Then it is answered from the stored verdict
    again = world.receive(raw(secret_hash=HINTED_SECRET, code=code))
    assert again.duplicate
    assert again.verdict is Verdict.SETTLED
    assert world.settler.deadlines == []


@pytest.mark.parametrize(
    ("status", "code", "changes"),
    [
        (ChargeStatus.DECLINED, "ok", {}),  # ePay says approved: a contradiction
        (ChargeStatus.CAPTURED, "error", {}),
        # a capture whose claim lapsed: the status API finishes it
        (ChargeStatus.AUTHORIZED, "ok", {"capture_pending": True}),
        (ChargeStatus.CAPTURED, "ok", {"epay": EpayRef("tx-other", None, None, None)}),
        (ChargeStatus.UNKNOWN, "ok", {}),
        (ChargeStatus.EXPIRED, "ok", {}),
    ],
)
def test_anything_else_is_asked_of_the_status_api(
    world: World, status: ChargeStatus, code: str, changes: dict[str, Any]
) -> None:
    # Given a charge whose state the notification does not simply confirm
    settled_world(world, status, **changes)
    # When its postLink arrives
    world.receive(raw(secret_hash=HINTED_SECRET, code=code))
    # Then it is stored first, then the charge read again and settled by the status API
    assert world.inbox.calls == ["get", "put", "get", "verdict:settled"]
    assert len(world.settler.deadlines) == 1


def test_an_approval_while_the_capture_is_under_way_is_left_to_its_claimant(world: World) -> None:
    # Given an authorized charge whose capture another path claimed a moment ago
    settled_world(world, ChargeStatus.AUTHORIZED, capture_pending=True, capture_claimed_at=NOW)
    # When the approval arrives / Then it is stored as agreeing, and ePay is not asked
    outcome = world.receive(raw(secret_hash=HINTED_SECRET))
    assert world.inbox.calls == ["get", "put:settled"]
    assert world.settler.deadlines == []
    assert outcome.detail == "agrees: AUTHORIZED"


class RacingCharges(FakeCharges):
    """The charge as the request that made it moves it between the postLink's two reads."""

    def __init__(self, inbox: FakeInbox, reads: list[Charge]) -> None:
        super().__init__(inbox, {reads[0].invoice_id: reads[0]})
        self.reads = reads

    def get(self, charge_id: str) -> Charge | None:
        self.inbox.calls.append("get")
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]


@pytest.mark.parametrize(
    ("then", "changes", "asked"),
    [
        # its own request recorded ePay's AUTH and holds the capture's claim: nothing to ask
        (ChargeStatus.AUTHORIZED, {"capture_pending": True, "capture_claimed_at": NOW}, 0),
        (ChargeStatus.CAPTURED, {}, 0),
        # still unanswered at the second read: the status API settles it, as before
        (ChargeStatus.PROCESSING, {}, 1),
        # an answer that contradicts the notification: the status API decides
        (ChargeStatus.DECLINED, {}, 1),
    ],
)
def test_a_postlink_racing_its_charges_own_answer_reads_again_before_asking_epay(
    world: World, then: ChargeStatus, changes: dict[str, Any], asked: int
) -> None:
    # Given a charge still PROCESSING when its approval is read in, then moved by the request
    # that made it before the notification is settled
    first = settled_world(world, ChargeStatus.PROCESSING, epay=EpayRef())
    racing = RacingCharges(world.inbox, [first, replace(first, status=then, **changes)])
    service = PostLinkService(
        inbox=world.inbox,
        charges=racing,
        settler=world.settler,
        terminals=world.terminals,
        telemetry=world.telemetry,
        clock=lambda: NOW,
    )
    # When the approval arrives
    body = raw(secret_hash=HINTED_SECRET)
    outcome = service.receive(
        Delivery(body, "application/json", Route.SUCCESS, "203.0.113.9"), Deadline.after(27)
    )
    # Then it is stored first, the charge read again, and ePay asked only when that read does
    # not already say what the notification says
    assert world.inbox.calls == ["get", "put", "get", "verdict:settled"]
    assert len(world.settler.deadlines) == asked
    assert outcome.verdict is Verdict.SETTLED
    if not asked:
        assert outcome.detail == f"agrees: {then.value}"
        assert outcome.status is then
        assert world.inbox.verdicts[stored_id(body)].detail == f"agrees: {then.value}"


def test_a_code_not_learned_yet_is_confirmed_by_the_status_api(world: World) -> None:
    # Given a captured charge and a postLink naming an 8-digit code we have not learned
    settled_world(world, ChargeStatus.CAPTURED)
    # When it arrives / Then the status API is asked (it alone tells whether the code is ours)
    world.receive(raw(secret_hash=HINTED_SECRET, terminal="98120001"))
    assert len(world.settler.deadlines) == 1


def test_a_hint_naming_another_invoices_charge_falls_back_to_the_invoice(world: World) -> None:
    # Given a secret_hash leading with the id of a charge that holds another invoice
    other = replace(CHARGE, id=HINTED_ID, invoice_id="000000777")
    world.charges.charges[other.invoice_id] = other
    # When the postLink for invoice 000000042 arrives
    with pytest.raises(ForgedNotificationError) as caught:
        world.receive(raw(secret_hash=HINTED_SECRET))
    # Then the charge of its own invoice was looked up and the secret found wrong for it
    assert world.inbox.calls[:2] == ["get", "lookup"]
    assert caught.value.mismatched == ("secret_hash",)


def test_forged_is_stored_refused_and_reported_without_settling(world: World) -> None:
    # Given a postLink with a guessed secret from another terminal
    # When it is received / Then it is refused with 403, naming both mismatches
    with pytest.raises(ForgedNotificationError) as caught:
        world.receive(raw(secret_hash="guess", terminal="other"))
    assert caught.value.http_status == 403
    assert caught.value.mismatched == ("secret_hash", "terminal")
    # And nothing was settled; it was stored with its forged verdict, in one write
    assert world.settler.deadlines == []
    assert world.inbox.calls == ["lookup", "put:forged"]
    # And it is reported with the sender's address, without the guessed secret
    (outcome,) = world.telemetry.outcomes
    assert outcome.verdict is Verdict.FORGED
    assert outcome.source_ip == "203.0.113.9"
    assert "guess" not in repr(outcome)
    # When the same forgery is replayed / Then it is refused again from the stored verdict
    with pytest.raises(ForgedNotificationError):
        world.receive(raw(secret_hash="guess", terminal="other"))
    assert world.inbox.calls[-1] == "seen_again"


def test_unknown_invoice_is_accepted_and_kept(world: World) -> None:
    # Given a postLink for an invoice we never charged / When it is received
    outcome = world.receive(raw(invoiceId="999999999"))
    # Then it is accepted and kept as unknown_invoice, and nothing is settled
    assert outcome.verdict is Verdict.UNKNOWN_INVOICE
    assert world.settler.deadlines == []
    assert world.inbox.calls[-1] == "verdict:unknown_invoice"


def test_junk_is_refused_and_counted_without_a_durable_write(world: World) -> None:
    # Given a body that is not a postLink / When it is received / Then it is refused
    with pytest.raises(ValidationError):
        world.receive(b"garbage")
    # And nothing was written, no charge looked up; the refusal was counted
    assert world.inbox.records == {}
    assert world.inbox.calls == []
    assert world.telemetry.outcomes[-1].verdict is Verdict.MALFORMED
    # When the same body arrives again / Then it is refused again
    with pytest.raises(ValidationError):
        world.receive(b"garbage")


def test_oversized_is_refused_before_storing(world: World) -> None:
    # Given a body over the size limit / When it is received / Then it is refused, never stored
    with pytest.raises(PayloadTooLargeError):
        world.receive(b"{" + b" " * MAX_NOTIFICATION_BYTES + b"}")
    assert world.inbox.calls == []


def test_a_copy_arriving_while_the_first_is_in_flight_is_not_settled_twice(world: World) -> None:
    # Given a first copy stored but not yet decided (its handler is still running, or died)
    digest = hashlib.sha256(raw()).hexdigest()
    world.inbox.records[stored_id(raw())] = InboxRecord(
        digest, "", None, Route.SUCCESS, None, NOW, Verdict.RECEIVED, invoice_id="000000042"
    )
    world.inbox.verdicts[stored_id(raw())] = StoredVerdict(Verdict.RECEIVED, 1, NOW)

    # When a copy arrives within the in-flight window / Then it is accepted without settling
    assert world.receive(raw()).verdict is Verdict.RECEIVED
    assert world.settler.deadlines == []

    # And once the window has passed, a copy is handled again (the first may have died)
    world.inbox.verdicts[stored_id(raw())] = StoredVerdict(
        Verdict.RECEIVED, 2, NOW - timedelta(minutes=1)
    )
    assert world.receive(raw()).verdict is Verdict.SETTLED
    assert len(world.settler.deadlines) == 1


# ------------------------------------------------------------------------------ terminal names


def test_a_code_not_learned_yet_is_confirmed_by_the_status_api_and_learned(world: World) -> None:
    # Given our terminal's code not learned, and a postLink naming the terminal by its code
    # When it is received, and the status answer names the same code beside our UUID
    outcome = world.receive(raw(terminal="98120001"))
    # Then it is settled (not forged), and the code is learned from the status answer
    assert outcome.verdict is Verdict.SETTLED
    assert world.settler.applied == 1
    assert world.terminals.learned == ["98120001"]


def test_a_code_the_status_api_does_not_confirm_is_forged(world: World) -> None:
    # Given a postLink with the right secret but another terminal's code
    # When the status answer names our code (98120001), not the offered one
    with pytest.raises(ForgedNotificationError) as caught:
        world.receive(raw(terminal="98458031"))
    # Then it is refused naming the terminal, and the status answer was not applied
    assert caught.value.mismatched == ("terminal",)
    assert world.settler.applied == 0
    assert world.inbox.calls[-1] == "verdict:forged"
    assert world.terminals.learned == []


def test_a_known_code_is_a_name_and_another_code_is_forged_at_once(world: World) -> None:
    # Given our code learned earlier
    world.terminals.code = "98120001"
    # When postLinks name the terminal by its code, its UUID, or another code
    assert world.receive(raw(terminal="98120001")).verdict is Verdict.SETTLED
    assert world.receive(raw(terminal=TERMINAL, id="tx-2")).verdict is Verdict.SETTLED
    with pytest.raises(ForgedNotificationError):
        world.receive(raw(terminal="98458031"))
    # Then the mismatch was judged against both names without asking ePay
    assert len(world.settler.deadlines) == 2


def test_a_notification_without_terminal_is_verified_by_the_rest(world: World) -> None:
    # Given a postLink without terminal / When it is received
    body = {k: v for k, v in PAYLOAD.items() if k != "terminal"}
    outcome = world.receive(json.dumps(body).encode())
    # Then it is not malformed: the other fields and the status API verify it
    assert outcome.verdict is Verdict.SETTLED
    assert world.settler.applied == 1


def test_a_card_saving_postlink_is_kept_as_an_unknown_invoice(world: World) -> None:
    # Given the postLink of saving a card: amount 0, USD, a CARD... invoice id
    outcome = world.receive(raw(invoiceId="CARD000000731", amount=0, currency="USD"))
    # Then it is well formed, answered 200 and kept, nothing settled
    assert outcome.verdict is Verdict.UNKNOWN_INVOICE
    assert world.settler.deadlines == []
    (record,) = world.inbox.records.values()
    assert record.notification["amount"] == "0"


def test_a_lone_surrogate_in_any_field_is_malformed_not_a_crash() -> None:
    # Given a JSON postLink whose secret_hash (or another field) spells a lone surrogate
    for name in ("secret_hash", "reason", "invoiceId"):
        body = json.dumps({**PAYLOAD, name: "\ud800"}).encode()
        # When it is parsed / Then it is refused as malformed (400), before any digest or write
        with pytest.raises(ValidationError, match="not valid Unicode"):
            parse_notification(body, "application/json")


# ------------------------------------------------------------------------------ inbox ids


def test_an_inbox_id_names_the_invoice_and_the_bodys_digest() -> None:
    # Given a notification's invoice and the digest of its body
    digest = hashlib.sha256(raw()).hexdigest()
    # When its inbox id is made / Then it is "<invoiceId>.<digest>", and reads back to both
    assert inbox_id_for("000000042", digest) == f"000000042.{digest}"
    assert split_inbox_id(f"000000042.{digest}") == ("000000042", digest)
    assert split_inbox_id(f"CARD000000731.{digest}") == ("CARD000000731", digest)
    # And a bare digest (an item stored before 2026-12-06) names no invoice
    assert inbox_id_for(None, digest) == digest
    assert split_inbox_id(digest) == (None, digest)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "F" * 64,  # upper case
        "0" * 63,
        "0" * 65,
        "000000042." + "0" * 63,
        "42." + "0" * 64,  # too short an invoice id
        "000000042.." + "0" * 64,
        "." + "0" * 64,
        "000000042/" + "0" * 64,
        "0000000420000000." + "0" * 64,  # 16 digits
        "000000042." + "0" * 64 + "\n",
        "000000042#" + "0" * 64,
        "INBOX#" + "0" * 64,
    ],
)
def test_anything_else_is_no_inbox_id(value: str) -> None:
    # Given a string of another shape / Then it is no inbox id, and cannot be split into a key
    assert not is_inbox_id(value)
    with pytest.raises(ValueError, match="not an inbox id"):
        split_inbox_id(value)
