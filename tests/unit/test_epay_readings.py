"""Settling from ePay's amounts read together, and learning the terminal's code from the status
API, on in-memory fakes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal

import pytest

from payments.charges.links import PublicLinks
from payments.charges.model import CHECK_LADDER, CaptureMode, ChargeStatus
from payments.charges.payment_gateway import AuthResult, GatewayStatus, TransactionAmounts
from payments.charges.reconciler import Reconciler
from payments.charges.requests import ChargeRequest
from payments.charges.terminals import (
    Purpose,
    Terminal,
    TerminalCodes,
    TerminalNames,
    looks_like_code,
)
from payments.charges.use_cases import ChargeUseCases
from payments.shared.deadline import Deadline
from tests.fakes import FakeGateway, FakeStore, RecordingTelemetry, fake_allocator
from tests.unit.test_settle_and_reconcile import Clock, setup, status, unknown

S = ChargeStatus
UUID = "terminal-1"  # FakeGateway's terminal id


# ------------------------------------------------------------------------------ amounts


@pytest.mark.parametrize(
    ("read", "detail"),
    [
        # ePay's own example, scaled to this charge: 100 paid, 40 went back, 60 stands
        (
            {"amount": "60.00", "original_amount": Decimal(100), "returned_amount": Decimal(40)},
            "CHARGE with amount 60.00, orgAmount 100, payoutAmount 40 KZT for a 100.00 charge",
        ),
        # all of it went back, yet CHARGE: 0 is an amount, not "missing"
        (
            {"amount": "0", "original_amount": Decimal(100), "returned_amount": Decimal(100)},
            "amount 0, orgAmount 100",
        ),
        # the amounts do not add up
        (
            {"amount": "100.00", "original_amount": Decimal(100), "returned_amount": Decimal(5)},
            "payoutAmount 5 ",
        ),
        # made for another amount
        ({"amount": "100.00", "original_amount": Decimal(150)}, "orgAmount 150 "),
        # a plain amount above the charge (older shape)
        ({"amount": "1000.00"}, "amount 1000.00 KZT"),
    ],
)
def test_captured_amounts_that_do_not_fit_the_charge_need_review(
    read: dict[str, object], detail: str
) -> None:
    # Given an UNKNOWN 100.00 charge, and the status API showing CHARGE with these amounts
    settler, _, store, gateway, _, charge_id = setup(unknown())
    gateway.status_answers.append(status("CHARGE", **read))  # type: ignore[arg-type]
    # When it is settled
    settled = settler.settle(charge_id, "reconciler", Deadline.after(10)).charge
    # Then a person decides: no captured amount is recorded, the history says what ePay showed
    assert settled.status is S.NEEDS_REVIEW
    assert settled.captured_amount is None
    assert detail in store.history[charge_id][-1].detail


@pytest.mark.parametrize(
    "read",
    [
        {"amount": "100.00"},
        {"amount": "100.00", "original_amount": Decimal(100), "returned_amount": Decimal(0)},
        {"amount": None, "original_amount": Decimal(100)},
        {"amount": "100.00", "bonus_amount": Decimal(0)},
    ],
)
def test_a_whole_capture_is_recorded_with_its_amount(read: dict[str, object]) -> None:
    # Given an UNKNOWN 100.00 charge, and ePay showing all of it taken (in any shape it uses)
    settler, _, _, gateway, _, charge_id = setup(unknown())
    gateway.status_answers.append(status("CHARGE", **read))  # type: ignore[arg-type]
    # When it is settled / Then it is CAPTURED for 100.00
    settled = settler.settle(charge_id, "reconciler", Deadline.after(10)).charge
    assert (settled.status, settled.captured_amount) == (S.CAPTURED, Decimal("100.00"))


def test_a_partial_capture_of_ours_fits_the_status_answer() -> None:
    # Given a 100.00 hold we captured for 60.00
    settler, _, store, gateway, _, charge_id = setup(
        AuthResult(GatewayStatus.AUTH, "tx-1", "1"), capture=CaptureMode.MANUAL
    )
    held = store.charges[charge_id]
    store.charges[charge_id] = replace(held, status=S.CAPTURED, captured_amount=Decimal(60))
    # When ePay shows 60 standing of 100, 40 released
    read = {"original_amount": Decimal(100), "returned_amount": Decimal(40)}
    gateway.status_answers.append(status("CHARGE", amount="60", **read))
    # Then the charge stays as it is
    settlement = settler.settle(charge_id, "postlink", Deadline.after(10))
    assert settlement.charge.status is S.CAPTURED
    assert settlement.outcome == "unchanged"


def test_a_cancelled_hold_reads_zero_standing() -> None:
    # Given an UNKNOWN charge whose hold was cancelled: nothing stands, all went back
    settler, _, _, gateway, _, charge_id = setup(unknown())
    read = {"original_amount": Decimal(100), "returned_amount": Decimal(100)}
    gateway.status_answers.append(status("CANCEL", amount="0", **read))
    # When it is settled / Then it is CANCELLED (the amounts fit a released hold)
    assert settler.settle(charge_id, "reconciler", Deadline.after(10)).charge.status is S.CANCELLED


def test_amounts_reading_in_one_place() -> None:
    # Given ePay's example (orgAmount 22.22, amount 12.22, payoutAmount 10)
    amounts = TransactionAmounts(Decimal("12.22"), Decimal("22.22"), Decimal(10))
    # Then it was made for 22.22, stands at 12.22, adds up; it fits 22.22 only "whatever stands"
    assert (amounts.made_for, amounts.standing) == (Decimal("22.22"), Decimal("12.22"))
    assert amounts.adds_up()
    assert amounts.fits(Decimal("22.22"))
    assert amounts.fits(Decimal("22.22"), Decimal("12.22"))
    assert not amounts.fits(Decimal("22.22"), Decimal("22.22"))
    assert "orgAmount 22.22" in str(amounts)


# ------------------------------------------------------------------------------ terminal codes


@dataclass
class FakeDirectory:
    """The TERMINAL# items: one code per terminal, written once."""

    codes: dict[str, str] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0

    def terminal_code(self, terminal_id: str) -> str | None:
        self.reads += 1
        return self.codes.get(terminal_id)

    def remember_terminal_code(self, terminal_id: str, code: str) -> str:
        self.writes += 1
        return self.codes.setdefault(terminal_id, code)


def test_the_code_is_learned_once_from_a_status_answer_naming_both() -> None:
    # Given our terminal's code not known yet
    directory = FakeDirectory()
    codes = TerminalCodes(directory, lambda: (Terminal(UUID, frozenset(Purpose)),))
    assert codes.names(UUID) == TerminalNames(UUID, None)
    # When status answers name the code beside our UUID (and one another terminal's)
    other = status("AUTH", terminal_id="someone-else", terminal_code="11111111").transaction
    assert codes.learn(other, UUID) is None
    ours = status("AUTH", terminal_id=UUID.upper(), terminal_code="98120001").transaction
    assert codes.learn(ours, "") == "98120001"
    assert codes.learn(ours, "") == "98120001"
    # Then it was written once, and is one of our names from now on
    assert (directory.codes, directory.writes) == ({UUID: "98120001"}, 1)
    assert codes.names(UUID).named("98120001")
    assert not codes.names(UUID).named("98120002")


def test_the_first_code_kept_wins() -> None:
    # Given a code already kept (another container learned it first)
    directory = FakeDirectory({UUID: "98120001"})
    # When this container learns another / Then the kept one is used
    learned = status("AUTH", terminal_id=UUID, terminal_code="98120009").transaction
    assert (
        TerminalCodes(directory, lambda: (Terminal(UUID, frozenset(Purpose)),)).learn(learned, UUID)
        == "98120001"
    )


@pytest.mark.parametrize(
    ("offered", "code", "to_confirm"),
    [
        ("98458031", None, True),  # looks like a code, none learned: the status API tells
        ("98458031", "98458031", False),  # known
        ("98458031", "98120001", False),  # another code than ours: a mismatch
        ("evil-terminal", None, False),  # no terminal name at all
        (None, None, False),
        (UUID, None, False),
    ],
)
def test_what_only_the_status_api_can_confirm(
    offered: str | None, code: str | None, to_confirm: bool
) -> None:
    # Given our names and an offered terminal / Then only an unlearned code-shaped one waits
    assert TerminalNames(UUID, code).to_confirm(offered) is to_confirm
    assert looks_like_code("98458031")
    assert not looks_like_code(UUID)


def test_the_reconciler_learns_the_code_from_its_status_checks() -> None:
    # Given an UNKNOWN charge, and the status API naming our terminal by both names
    clock = Clock()
    store, directory = FakeStore(), FakeDirectory()
    gateway = FakeGateway(auth_outcome=unknown())  # type: ignore[arg-type]
    gateway.terminal_list = (Terminal(UUID, frozenset(Purpose)),)
    gateway.status_answers.append(status("CHARGE", terminal_id=UUID, terminal_code="98120001"))
    charges = ChargeUseCases.build(
        store=store,
        gateway=gateway,
        telemetry=RecordingTelemetry(),
        links=PublicLinks("https://pay.example"),
        allocator=fake_allocator(),
        clock=clock,
    )
    request = ChargeRequest(Decimal("100.00"), "KZT", "card", "a", "d", capture=CaptureMode.AUTO)
    charge_id = charges.service.create_charge(request, "k", Deadline.after(20)).charge.id
    reconciler = Reconciler(
        store=store,
        settler=charges.settler,
        transitions=charges.transitions,
        clock=clock,
        terminals=TerminalCodes(directory, gateway.terminals),
    )
    # When the reconciler checks it
    clock.advance(CHECK_LADDER[0] + timedelta(seconds=1))
    reconciler.run(Deadline.after(30))
    # Then the charge is settled and the code kept for the postLink intake
    assert store.charges[charge_id].status is S.CAPTURED
    assert directory.codes == {UUID: "98120001"}
