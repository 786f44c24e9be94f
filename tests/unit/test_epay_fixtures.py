"""Every ePay answer the service reads, from fixtures of real-world shapes (tests/fixtures/epay,
each naming its source), through the service's own parsers: the client on a stubbed transport,
the status reading, the postLink parser and its verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from payments.charges.declines import DeclineCategory
from payments.charges.model import secret_hash_digest
from payments.charges.notifications import parse_notification, verify
from payments.charges.payment_gateway import GatewayStatus, InvoiceTokenRequest, Token
from payments.charges.terminals import TerminalNames
from payments.epay.client import EpayClient, EpayCredentials, RetryPolicy
from payments.epay.responses import read
from payments.errors import (
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
)
from payments.shared.deadline import Deadline
from tests.fakes import FakeResponse, FakeTransport, make_charge
from tests.unit.test_epay_client import auth_request

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "epay"
TERMINAL_ID = "67e34d63-102f-4bd1-898e-370781d0074d"
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def answer(name: str) -> FakeResponse:
    """The fixture as ePay's HTTP answer."""
    data = fixture(name)
    return FakeResponse(data["status"], json.dumps(data["body"], ensure_ascii=False).encode())


def epay(*answers: FakeResponse, token: bool = True) -> tuple[EpayClient, FakeTransport]:
    """The client on a transport answering (a terminal token, when `token`, then) `answers`."""
    transport = FakeTransport([answer("token-ok")] * token + list(answers))
    client = EpayClient(
        oauth_url="https://oauth.test/oauth2/token",
        api_url="https://api.test",
        credentials=lambda: EpayCredentials.single("test", "secret", TERMINAL_ID),
        scope="payment",
        retry=RetryPolicy(max_retries=0, sleep=lambda _: None),
        http=transport,  # type: ignore[arg-type]
        clock=lambda: NOW,
    )
    return client, transport


def authorize(name: str) -> Any:
    client, _ = epay(answer(name), token=False)
    return client.authorize(Token("t", FAR_FUTURE), auth_request(), Deadline.after(20))


def test_every_fixture_names_its_source_and_is_read_by_a_test() -> None:
    # Given the fixtures / Then each names where its shape comes from, and this module reads it
    text = Path(__file__).read_text()
    names = sorted(p.stem for p in FIXTURES.glob("*.json"))
    assert len(names) >= 30
    for name in names:
        assert fixture(name)["source"].strip(), name
        assert f'"{name}"' in text or name.split("-")[0] in {"charge", "cancel", "refund"}, name


# ------------------------------------------------------------------------------ token


@pytest.mark.parametrize(
    ("name", "lifetime"), [("token-ok", 7200), ("token-expires-as-string", 1200)]
)
def test_token_answers_are_read(name: str, lifetime: int) -> None:
    # Given ePay's token answer (expires_in a number or a string, refresh_token empty)
    client, _ = epay(answer(name), token=False)
    # When an invoice token is asked / Then it is read with its lifetime
    request = InvoiceTokenRequest("000000042", Decimal(1), "KZT", "https://a", "https://b", "h")
    token = client.invoice_token(request, Deadline.after(20))
    assert token.access_token
    assert (token.expires_at - NOW).total_seconds() == lifetime


def test_a_refused_token_is_a_refusal() -> None:
    # Given ePay refusing the credentials / When a token is asked / Then it is a refusal (the
    # charge path answers 503 and marks the charge FAILED: no auth was sent)
    client, _ = epay(answer("token-invalid-client"), token=False)
    with pytest.raises(GatewayRejectedError) as caught:
        client.status("000000042", "", Deadline.after(20))
    assert caught.value.gateway_http_status == 401


# ------------------------------------------------------------------------------ auth


@pytest.mark.parametrize(
    ("name", "status"),
    [("auth-auth", GatewayStatus.AUTH), ("auth-charge", GatewayStatus.CHARGE)],
)
def test_auth_successes_are_read(name: str, status: GatewayStatus) -> None:
    # Given an approved auth with accountId, amountBonus and the request echoed / When read
    result = authorize(name)
    # Then the status, transaction and references are read; the extra fields change nothing
    body = fixture(name)["body"]
    assert result.status is status
    assert (result.transaction_id, result.invoice_id) == (body["id"], "000000042")
    assert result.reference == body["reference"]
    assert result.amount == Decimal("1500.5")


def test_auth_3d_is_read() -> None:
    # Given ePay demanding 3-D Secure / When read / Then the continuation is there
    result = authorize("auth-3d")
    assert result.status is GatewayStatus.THREE_DS
    assert result.secure3d is not None
    assert result.secure3d.action == "https://acs.bank.kz/acs/pareq"


@pytest.mark.parametrize(
    ("name", "code", "category"),
    [
        ("auth-declined-484-400", 484, DeclineCategory.SOFT),
        ("auth-declined-483-200", 483, DeclineCategory.HARD),
    ],
)
def test_final_codes_decline_with_their_category(
    name: str, code: int, category: DeclineCategory
) -> None:
    # Given a refusal with a code ePay documents as final, as a 4xx or as a 2xx body
    # When read / Then it is a decline carrying the code and its category
    with pytest.raises(GatewayRejectedError) as caught:
        authorize(name)
    assert caught.value.gateway_code == code
    assert caught.value.decline_category == category.value


@pytest.mark.parametrize(
    "name", ["auth-nonfinal-454-400", "auth-nonfinal-459-200", "auth-unlisted-1267-400"]
)
def test_non_final_and_unlisted_codes_leave_the_outcome_unknown(name: str) -> None:
    # Given a refusal with a code ePay marks "not final, request the status" (454; 459 on the
    # KK page), or one its table does not list (1267), as a 4xx or as a 2xx body
    # When read / Then nobody knows whether the money moved: the status API must settle it
    with pytest.raises(GatewayUnknownOutcomeError) as caught:
        authorize(name)
    assert str(fixture(name)["body"]["code"]) in caught.value.message


# ------------------------------------------------------------------------------ status


def status_of(name: str) -> Any:
    client, _ = epay(answer(name))
    return client.status("000000042", "", Deadline.after(20))


def test_full_status_transaction_is_read() -> None:
    # Given the status of an AUTH with every field ePay sends (terminal code beside the UUID,
    # secure a boolean, reasonCode a string, the three amounts)
    tx = status_of("status-100-auth").transaction
    # When read / Then both names of the terminal, the amounts and the reason are there
    assert tx is not None
    assert tx.status is GatewayStatus.AUTH
    assert (tx.terminal_id, tx.terminal_code) == (TERMINAL_ID, "98120001")
    assert tx.reason_code == 0
    assert tx.amounts.fits(Decimal("1500.50"), Decimal("1500.50"))


def test_the_official_example_amounts_are_read_together() -> None:
    # Given ePay's own example: a 22.22 payment shown as amount 12.22, orgAmount 22.22,
    # payoutAmount 10 / When read
    amounts = status_of("status-100-charge-partly-returned").transaction.amounts
    # Then it was made for 22.22, stands at 12.22, 10 went back: not all of a 22.22 charge
    assert (amounts.made_for, amounts.standing, amounts.returned) == (
        Decimal("22.22"),
        Decimal("12.22"),
        Decimal(10),
    )
    assert amounts.adds_up()
    assert not amounts.fits(Decimal("22.22"), Decimal("22.22"))


def test_an_amount_of_zero_is_a_value() -> None:
    # Given a transaction standing at 0 (all returned) / When read / Then 0 is read, not "missing"
    amounts = status_of("status-100-charge-zero").transaction.amounts
    assert amounts.standing == Decimal(0)
    assert not amounts.fits(Decimal("1500.50"), Decimal("1500.50"))


def test_a_rejected_transaction_carries_its_decline_category() -> None:
    # Given REJECT with reasonCode "484" (a string) / When read
    # Then the adapter names its category
    tx = status_of("status-100-reject").transaction
    assert tx is not None
    assert (tx.reason_code, tx.decline_category) == (484, DeclineCategory.SOFT)


@pytest.mark.parametrize(("name", "code"), [("status-102", "102"), ("status-107", "107")])
def test_status_without_a_transaction(name: str, code: str) -> None:
    # Given "no such invoice" or "in progress" / When read / Then there is no transaction
    result = status_of(name)
    assert (result.result_code, result.transaction) == (code, None)
    assert result.not_found is (code == "102")


# ------------------------------------------------------------------------------ operations


@pytest.mark.parametrize("op", ["charge", "cancel", "refund"])
def test_operation_answers(op: str) -> None:
    # Given an operation's success and failure answers / When read
    ok = fixture(f"{op}-ok")
    assert read("capture", ok["status"], json.dumps(ok["body"]).encode()) == {}
    failed = fixture(f"{op}-failed")
    # Then success is an empty object, failure a refusal with code 100
    with pytest.raises(GatewayRejectedError) as caught:
        read("capture", failed["status"], json.dumps(failed["body"]).encode())
    assert caught.value.gateway_code == 100


def test_capture_reads_the_charge_endpoints_answer() -> None:
    # Given the charge endpoint answering 200 {} / When a capture is made / Then it succeeds
    client, transport = epay(answer("charge-ok"))
    client.capture("tx-1", "", None, Deadline.after(20))
    assert transport.requests[-1].url == "https://api.test/operation/tx-1/charge"


# ------------------------------------------------------------------------------ cards


def test_card_list_is_read() -> None:
    # Given an account's saved cards in ePay's PascalCase / When listed
    client, transport = epay(answer("cards-list"))
    cards = client.saved_cards("customer-42", Deadline.after(20))
    # Then each card is read with its mask, availability and the payment that saved it
    assert [c.card_mask for c in cards] == ["4405...2283", "5522...6736"]
    assert [c.payment_available for c in cards] == [True, False]
    assert cards[0].transaction_id == "5d0d39e2-4b5a-4d8c-9a0f-6b7c8d9e0f1a"
    assert "c0000000" not in repr(cards[0])
    assert transport.requests[-1].url == "https://api.test/cards/customer-42"


@pytest.mark.parametrize("status", [400, 200])
def test_an_unknown_account_has_no_cards(status: int) -> None:
    # Given ePay's "no record" (1373) for the account, as a 4xx or a 2xx / Then no cards
    data = fixture("cards-unknown-account")
    client, _ = epay(FakeResponse(status, json.dumps(data["body"]).encode()))
    assert client.saved_cards("unknown-1", Deadline.after(20)) == []


def test_another_card_list_error_is_unavailable() -> None:
    # Given a 2xx card list answer with another code / Then the list is unavailable
    client, _ = epay(FakeResponse(200, b'{"code": 1, "message": "x"}'))
    with pytest.raises(GatewayUnavailableError):
        client.saved_cards("customer-42", Deadline.after(20))


# ------------------------------------------------------------------------------ postLinks

SECRET = "s3cret-value-chosen-for-this-charge"
CHARGE = make_charge(invoice_id="000000042", secret_hash_digest=secret_hash_digest(SECRET))


def notification(name: str) -> Any:
    data = fixture(name)
    body = json.dumps(data["body"], ensure_ascii=False).encode()
    return parse_notification(body, data["content_type"])


@pytest.mark.parametrize(
    ("name", "terminal"),
    [
        ("postlink-ok", "98458031"),
        ("postlink-error", "98458031"),
        ("postlink-uuid-terminal", TERMINAL_ID),
        ("postlink-no-terminal", None),
    ],
)
def test_postlinks_are_read(name: str, terminal: str | None) -> None:
    # Given a postLink as ePay sends it (fractional dateTime, secure "no", reasonCode a number or
    # a string; terminal as the code, the UUID, or left out) / When parsed / Then it is well formed
    n = notification(name)
    assert (n.invoice_id, n.amount, n.currency, n.terminal) == (
        "000000042",
        Decimal("1500.5"),
        "KZT",
        terminal,
    )
    assert n.kept["dateTime"] == "2026-11-28T17:00:01.734125+05:00"


@pytest.mark.parametrize(
    ("name", "code", "mismatched"),
    [
        ("postlink-ok", "98458031", ()),  # our code, learned
        ("postlink-ok", None, ()),  # a code not learned yet: the status API confirms it
        ("postlink-ok", "98120001", ("terminal",)),  # another terminal's code
        ("postlink-uuid-terminal", None, ()),
        ("postlink-no-terminal", "98458031", ()),  # verified by the other fields and status API
    ],
)
def test_postlinks_verify_against_both_terminal_names(
    name: str, code: str | None, mismatched: tuple[str, ...]
) -> None:
    # Given our terminal's UUID and (maybe) its learned code / When a postLink is verified
    # Then it matches the UUID or the code, and a mismatch is judged against both
    assert verify(notification(name), CHARGE, TerminalNames(TERMINAL_ID, code)) == mismatched


def test_card_save_postlink_is_well_formed() -> None:
    # Given the postLink of saving a card (amount 0, USD, invoice id CARD...) / When parsed
    n = notification("postlink-card-save")
    # Then it is accepted as a notification (no charge holds its invoice)
    assert (n.invoice_id, n.amount, n.currency) == ("CARD000000731", Decimal(0), "USD")
    assert n.kept["cardId"] == "****0021"
