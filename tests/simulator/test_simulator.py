"""The ePay simulator over real HTTP on loopback (urllib3), as a client of ePay would see it."""

from __future__ import annotations

import html
import itertools
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local.epay_sim import (
    CARD_3DS,
    CARD_AUTH,
    CARD_CHARGE,
    CARD_EXPIRED,
    CARD_FORMAT_ERROR,
    CARD_INSUFFICIENT_FUNDS,
    CARD_ISSUER_UNAVAILABLE,
    CARD_NO_SUCH_CARD,
    CARD_STOLEN,
    CARDS,
    DEFAULT_SCOPE,
    ERR_INVOICE_USED,
    ERR_REQUEST,
    ERR_TOKEN_BINDING,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    TEST_TERMINAL_ID,
    EpaySimulator,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
_invoices = itertools.count(100001)


class FakeClock:
    """A clock the test moves by hand; the simulator reads it for token expiry."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def sim(clock: FakeClock) -> Iterator[EpaySimulator]:
    simulator = EpaySimulator(host="127.0.0.1", port=0, clock=clock).start()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _fresh_sim(sim: EpaySimulator) -> None:
    sim.reset()


@pytest.fixture(scope="module")
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=5.0))
    yield pool
    pool.clear()


# ---------------------------------------------------------------- helpers (an ePay client)


def new_invoice() -> str:
    return str(next(_invoices))


def request_token(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    fields: dict[str, str | None] | None = None,
    *,
    multipart: bool = False,
) -> urllib3.BaseHTTPResponse:
    merged: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "scope": DEFAULT_SCOPE,
        "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET,
        "terminal": TEST_TERMINAL_ID,
    }
    merged.update(fields or {})
    form = {k: v for k, v in merged.items() if v is not None}
    return http.request("POST", sim.oauth_url, fields=form, encode_multipart=multipart)


def invoice_token(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    invoice: str,
    amount: str = "100",
    currency: str = "KZT",
    **extra: str,
) -> str:
    fields: dict[str, str | None] = {"invoiceID": invoice, "amount": amount, "currency": currency}
    resp = request_token(http, sim, fields | dict(extra))
    assert resp.status == 200, resp.data
    token: str = resp.json()["access_token"]
    return token


def terminal_token(http: urllib3.PoolManager, sim: EpaySimulator) -> str:
    resp = request_token(http, sim)
    assert resp.status == 200, resp.data
    token: str = resp.json()["access_token"]
    return token


def auth_body(invoice: str, card: str, amount: Any = 100, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": amount,
        "currency": "KZT",
        "terminalId": TEST_TERMINAL_ID,
        "invoiceId": invoice,
        "description": "Subscription",
        "accountId": "customer-1",
        "name": "JOHN DOE",
        "email": "john@example.com",
        "phone": "77001234567",
        "backLink": "http://127.0.0.1:9/back",
        "failureBackLink": "http://127.0.0.1:9/fail",
        "postLink": "",
        "failurePostLink": "",
        "language": "rus",
        "paymentType": "cardId",
        "recurrent": True,
        "cardId": {"id": card},
    }
    body.update(overrides)
    return body


def post_auth(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    token: str,
    body: dict[str, Any] | str,
    **kwargs: Any,
) -> urllib3.BaseHTTPResponse:
    raw = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return http.request(
        "POST",
        f"{sim.api_url}/payments/cards/auth",
        body=raw.encode("utf-8"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        **kwargs,
    )


def pay(
    http: urllib3.PoolManager, sim: EpaySimulator, card: str, amount: int = 100
) -> tuple[str, urllib3.BaseHTTPResponse]:
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice, amount=str(amount))
    return invoice, post_auth(http, sim, token, auth_body(invoice, card, amount))


def status(http: urllib3.PoolManager, sim: EpaySimulator, invoice: str) -> dict[str, Any]:
    resp = http.request(
        "GET",
        f"{sim.api_url}/check-status/payment/transaction/{invoice}",
        headers={"Authorization": f"Bearer {terminal_token(http, sim)}"},
    )
    assert resp.status == 200
    result: dict[str, Any] = resp.json()
    return result


def operation(
    http: urllib3.PoolManager, sim: EpaySimulator, tx_id: str, name: str, **query: str
) -> urllib3.BaseHTTPResponse:
    url = f"{sim.api_url}/operation/{tx_id}/{name}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    return http.request(
        "POST", url, headers={"Authorization": f"Bearer {terminal_token(http, sim)}"}
    )


# ---------------------------------------------------------------- token


def test_token_with_wrong_secret_is_401(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the sandbox client id with a wrong secret
    # When a token is requested
    resp = request_token(http, sim, {"client_secret": "not-the-secret"})
    # Then ePay refuses the client
    assert resp.status == 401
    assert resp.json() == {"error": "invalid_client"}


@pytest.mark.parametrize(
    "fields",
    [
        {"grant_type": None},
        {"client_id": None},
        {"invoiceID": "123456", "amount": None, "currency": "KZT"},
        {"invoiceID": "123456", "amount": "100", "currency": None},
        {"invoiceID": "12345", "amount": "100", "currency": "KZT"},
        {"terminal": "00000000-0000-0000-0000-000000000000"},
    ],
)
def test_token_with_missing_or_bad_fields_is_400(
    http: urllib3.PoolManager, sim: EpaySimulator, fields: dict[str, str | None]
) -> None:
    # Given a token form missing a field or with a wrong one
    # When it is sent
    resp = request_token(http, sim, fields)
    # Then it is a 400
    assert resp.status == 400


def test_token_accepts_multipart_and_journal_records_form_fields(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a multipart token request bound to an invoice with notification links
    invoice = new_invoice()
    # When it is sent
    fields: dict[str, str | None] = {
        "invoiceID": invoice,
        "amount": "150.50",
        "currency": "KZT",
        "postLink": "http://127.0.0.1:9/postlink",
        "secret_hash": "s3cr3t",
    }
    resp = request_token(http, sim, fields, multipart=True)
    # Then a bearer token comes back and the journal holds the parsed form
    assert resp.status == 200
    data = resp.json()
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 1200
    assert set(data) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    (entry,) = sim.requests("token")
    assert entry.method == "POST"
    assert entry.path == "/oauth2/token"
    assert entry.status == 200
    assert entry.form is not None
    assert entry.form["invoiceID"] == invoice
    assert entry.form["amount"] == "150.50"
    assert entry.form["secret_hash"] == "s3cr3t"
    assert (entry.header("Content-Type") or "").startswith("multipart/form-data")


def test_expires_in_can_be_a_string() -> None:
    # Given a simulator that sends expires_in as a string, like some ePay answers
    with EpaySimulator(expires_in=7200, expires_in_as_string=True) as other:
        pool = urllib3.PoolManager(retries=False)
        # When a token is requested
        resp = request_token(pool, other)
        # Then expires_in is the string "7200"
        assert resp.json()["expires_in"] == "7200"


def test_token_expires_by_the_injected_clock(
    http: urllib3.PoolManager, sim: EpaySimulator, clock: FakeClock
) -> None:
    # Given a token for an invoice and a terminal token
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    plain = terminal_token(http, sim)
    # When the clock passes the token's lifetime
    clock.advance(1201)
    # Then the API refuses both tokens as unauthorised and nothing is committed
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
    assert resp.status == 401
    stat = http.request(
        "GET",
        f"{sim.api_url}/check-status/payment/transaction/{invoice}",
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert stat.status == 401
    assert sim.ledger == {}


# ---------------------------------------------------------------- auth


def test_auth_happy_path_answers_with_epay_casing(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a token bound to an invoice of 100 KZT
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When the AUTH card is charged
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
    # Then the money is held and the answer uses ePay's casing
    assert resp.status == 200
    data = resp.json()
    assert data["status"] == "AUTH"
    assert data["code"] == 0
    assert data["invoiceID"] == invoice
    assert data["cardID"] == CARD_AUTH
    assert data["cardMask"] == "440043******0178"
    assert data["secure3D"] is None
    assert re.fullmatch(r"\d{12}", data["reference"])
    assert len(data["approvalCode"]) == 6
    assert {"id", "accountID", "amount", "currency", "reason", "intReference"} <= set(data)
    # And the ledger shows one committed auth
    entry = sim.ledger[invoice]
    assert entry.status_name == "AUTH"
    assert entry.transaction_id == data["id"]
    assert entry.amount == Decimal(100)
    assert entry.captured_amount == Decimal(0)
    assert entry.auth_count == 1
    assert entry.reference == data["reference"]


def test_charge_card_takes_the_money_at_once(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the single-stage card
    # When it is charged
    invoice, resp = pay(http, sim, CARD_CHARGE)
    # Then ePay answers CHARGE and the ledger shows the money taken
    assert resp.status == 200
    assert resp.json()["status"] == "CHARGE"
    assert sim.ledger[invoice].captured_amount == Decimal(100)


def test_auth_with_decimal_amount(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a token for 150.50
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice, amount="150.50")
    # When the auth sends 150.5 as a JSON number
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH, amount=150.5))
    # Then the amounts are equal and it is authorised
    assert resp.status == 200
    assert sim.ledger[invoice].amount == Decimal("150.50")


@pytest.mark.parametrize(
    ("token_fields", "body_overrides"),
    [
        ({"amount": "100"}, {"amount": 101}),
        ({"currency": "KZT"}, {"currency": "USD"}),
        ({}, {"invoiceId": "999999"}),
        ({}, {"terminalId": "11111111-2222-3333-4444-555555555555"}),
    ],
)
def test_auth_not_matching_the_token_binding_is_rejected(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    token_fields: dict[str, str],
    body_overrides: dict[str, Any],
) -> None:
    # Given a token bound to an invoice, amount, currency and terminal
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice, **token_fields)
    # When the auth body differs from the binding
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH, **body_overrides))
    # Then it is rejected and nothing is committed
    assert resp.status == 400
    assert resp.json()["code"] == ERR_TOKEN_BINDING
    assert sim.ledger == {}


def test_auth_with_a_terminal_token_is_rejected(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a token requested without invoiceID
    token = terminal_token(http, sim)
    # When it is used for an auth
    resp = post_auth(http, sim, token, auth_body(new_invoice(), CARD_AUTH))
    # Then the auth is refused as not bound
    assert resp.status == 400
    assert resp.json()["code"] == ERR_TOKEN_BINDING


def test_auth_without_token_is_401(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given no bearer token
    # When an auth is sent
    resp = http.request(
        "POST",
        f"{sim.api_url}/payments/cards/auth",
        body=json.dumps(auth_body(new_invoice(), CARD_AUTH)).encode(),
        headers={"Content-Type": "application/json"},
    )
    # Then it is unauthorised
    assert resp.status == 401


def test_reused_invoice_is_rejected_and_counted(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an invoice already authorised
    invoice, first = pay(http, sim, CARD_AUTH)
    assert first.status == 200
    # When a second auth is sent for the same invoice with a fresh token
    token = invoice_token(http, sim, invoice)
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
    # Then it is rejected, the first transaction is untouched and the reuse is counted
    assert resp.status == 400
    assert resp.json()["code"] == ERR_INVOICE_USED
    entry = sim.ledger[invoice]
    assert entry.status_name == "AUTH"
    assert entry.auth_count == 2


def test_invoice_sharing_the_last_six_digits_is_rejected(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an authorised invoice 000123456
    invoice = "000123456"
    token = invoice_token(http, sim, invoice)
    assert post_auth(http, sim, token, auth_body(invoice, CARD_AUTH)).status == 200
    # When another invoice ends with the same 6 digits
    other = "999123456"
    token = invoice_token(http, sim, other)
    resp = post_auth(http, sim, token, auth_body(other, CARD_AUTH))
    # Then it is rejected as a reused invoice
    assert resp.status == 400
    assert resp.json()["code"] == ERR_INVOICE_USED
    assert other not in sim.ledger


@pytest.mark.parametrize(
    ("description", "accepted"),
    [
        ("Ж" * 62 + "a", True),  # 125 bytes
        ("Ж" * 63, False),  # 126 bytes of Cyrillic
    ],
)
def test_description_is_limited_to_125_bytes(
    http: urllib3.PoolManager, sim: EpaySimulator, description: str, accepted: bool
) -> None:
    # Given a description measured in UTF-8 bytes
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When the auth is sent
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH, description=description))
    # Then up to 125 bytes pass and 126 are rejected
    if accepted:
        assert resp.status == 200
    else:
        assert resp.status == 400
        assert resp.json()["code"] == ERR_REQUEST
        assert sim.ledger == {}


@pytest.mark.parametrize(
    "overrides",
    [
        {"paymentType": "card"},
        {"cardId": CARD_AUTH},
        {"cardId": {"ID": CARD_AUTH}},
        {"name": "Иван"},
        {"language": "en"},
    ],
)
def test_malformed_auth_fields_are_rejected(
    http: urllib3.PoolManager, sim: EpaySimulator, overrides: dict[str, Any]
) -> None:
    # Given a valid token
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When the auth has a malformed field
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH, **overrides))
    # Then it is a request error and nothing is committed
    assert resp.status == 400
    assert resp.json()["code"] == ERR_REQUEST
    assert sim.ledger == {}


@pytest.mark.parametrize(
    ("invoice", "amount_json"),
    [("12345", "100"), ("1234567890123456", "100"), ("654321", "100.005"), ("654321", "0")],
)
def test_bad_invoice_or_amount_is_rejected(
    http: urllib3.PoolManager, sim: EpaySimulator, invoice: str, amount_json: str
) -> None:
    # Given a valid token (for a valid invoice)
    token = invoice_token(http, sim, "654321")
    # When the auth carries a bad invoiceId or amount
    body = json.dumps(auth_body(invoice, CARD_AUTH, amount="AMOUNT")).replace(
        '"AMOUNT"', amount_json
    )
    resp = post_auth(http, sim, token, body)
    # Then it is a request error
    assert resp.status == 400
    assert resp.json()["code"] == ERR_REQUEST


@pytest.mark.parametrize(
    ("card", "code"),
    [
        (CARD_INSUFFICIENT_FUNDS, 484),
        (CARD_STOLEN, 483),
        (CARD_EXPIRED, 478),
        ("c0000000-0000-4000-8000-000000000007", 455),
        (CARD_FORMAT_ERROR, 477),
        (CARD_ISSUER_UNAVAILABLE, 493),
        (CARD_NO_SUCH_CARD, 471),
        ("0b9b7b1e-unknown-card", 471),
    ],
)
def test_decline_cards(http: urllib3.PoolManager, sim: EpaySimulator, card: str, code: int) -> None:
    # Given a card the issuer declines
    # When it is charged
    invoice, resp = pay(http, sim, card)
    # Then ePay answers 400 with the decline code and the ledger records REJECT
    assert resp.status == 400
    data = resp.json()
    assert data["code"] == code
    assert data["message"]
    entry = sim.ledger[invoice]
    assert entry.status_name == "REJECT"
    assert entry.reason_code == code
    assert entry.auth_count == 1


# ---------------------------------------------------------------- status


def test_status_found_and_not_found(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given an authorised invoice
    invoice, resp = pay(http, sim, CARD_AUTH)
    # When the status API is asked about it and about an unknown invoice
    found = status(http, sim, invoice)
    missing = status(http, sim, "555555555")
    # Then the first is 100 with the transaction in ePay's casing, the second 102
    assert found["resultCode"] == "100"
    tx = found["transaction"]
    assert tx["statusName"] == "AUTH"
    assert tx["invoiceID"] == invoice
    assert tx["id"] == resp.json()["id"]
    assert tx["cardID"] == CARD_AUTH
    assert tx["terminalID"] == TEST_TERMINAL_ID
    assert tx["reasonCode"] == 0
    assert {"reference", "approvalCode", "cardMask", "reason", "createdDate"} <= set(tx)
    assert missing["resultCode"] == "102"
    assert "transaction" not in missing


def test_status_with_a_token_without_terminal_is_104(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a token requested without terminal
    resp = request_token(http, sim, {"terminal": None})
    token = resp.json()["access_token"]
    # When it asks for a status
    stat = http.request(
        "GET",
        f"{sim.api_url}/check-status/payment/transaction/123456",
        headers={"Authorization": f"Bearer {token}"},
    )
    # Then the result code says there is no terminal
    assert stat.json()["resultCode"] == "104"


# ---------------------------------------------------------------- operations


def test_capture_only_from_auth_and_not_above_the_hold(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a held AUTH of 100 and a taken CHARGE
    held, resp = pay(http, sim, CARD_AUTH)
    held_id = resp.json()["id"]
    _, charged = pay(http, sim, CARD_CHARGE)
    # When capturing the CHARGE, over-capturing the AUTH, then capturing 60 of it twice
    on_charge = operation(http, sim, charged.json()["id"], "charge")
    too_much = operation(http, sim, held_id, "charge", amount="100.01")
    partial = operation(http, sim, held_id, "charge", amount="60")
    again = operation(http, sim, held_id, "charge")
    # Then only the partial capture of the AUTH succeeds
    assert on_charge.status == 400
    assert on_charge.json() == {"code": 100, "message": ""}
    assert too_much.status == 400
    assert partial.status == 200
    assert again.status == 400
    entry = sim.ledger[held]
    assert entry.status_name == "CHARGE"
    assert entry.captured_amount == Decimal(60)


def test_capture_amount_in_json_body(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a held AUTH
    invoice, resp = pay(http, sim, CARD_AUTH)
    # When capturing with a JSON body {"amount": 25.5}
    capture = http.request(
        "POST",
        f"{sim.api_url}/operation/{resp.json()['id']}/charge",
        body=b'{"amount": 25.5}',
        headers={
            "Authorization": f"Bearer {terminal_token(http, sim)}",
            "Content-Type": "application/json",
        },
    )
    # Then 25.50 is captured
    assert capture.status == 200
    assert sim.ledger[invoice].captured_amount == Decimal("25.50")


def test_cancel_only_from_auth(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a held AUTH
    invoice, resp = pay(http, sim, CARD_AUTH)
    tx_id = resp.json()["id"]
    # When it is cancelled twice
    first = operation(http, sim, tx_id, "cancel")
    second = operation(http, sim, tx_id, "cancel")
    # Then the first cancels and the second fails
    assert first.status == 200
    assert second.status == 400
    assert sim.ledger[invoice].status_name == "CANCEL"


def test_refund_minimum_partial_and_full(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a CHARGE of 100 and an AUTH
    invoice, resp = pay(http, sim, CARD_CHARGE)
    tx_id = resp.json()["id"]
    _, held = pay(http, sim, CARD_AUTH)
    # When refunding the AUTH, 9.99, 40, the same externalID again, then the rest, then more
    on_auth = operation(http, sim, held.json()["id"], "refund", amount="20")
    below_min = operation(http, sim, tx_id, "refund", amount="9.99")
    partial = operation(http, sim, tx_id, "refund", amount="40", externalID="r-1")
    state_after_partial = sim.ledger[invoice].status_name
    same_external = operation(http, sim, tx_id, "refund", amount="10", externalID="r-1")
    rest = operation(http, sim, tx_id, "refund", externalID="r-2")
    beyond = operation(http, sim, tx_id, "refund", amount="10")
    # Then refunds need CHARGE and at least 10; partial keeps CHARGE, full becomes REFUND
    assert on_auth.status == 400
    assert below_min.status == 400
    assert partial.status == 200
    assert state_after_partial == "CHARGE"
    assert same_external.status == 400
    assert rest.status == 200
    assert beyond.status == 400
    entry = sim.ledger[invoice]
    assert entry.status_name == "REFUND"
    assert entry.refunded_amount == Decimal(100)


def test_operation_on_unknown_transaction_fails(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given no transaction
    # When an unknown id is captured
    resp = operation(http, sim, "8d7f2d2e-0000-0000-0000-000000000000", "charge")
    # Then ePay's operation failure comes back
    assert resp.status == 400
    assert resp.json()["code"] == 100


def test_cards_list_and_deactivate(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the saved cards of an account
    headers = {"Authorization": f"Bearer {terminal_token(http, sim)}"}
    listed = http.request("GET", f"{sim.api_url}/cards/customer-1", headers=headers).json()
    assert {"ID", "CardMask", "PayerName", "PaymentAvailable"} <= set(listed[0])
    assert CARD_AUTH in {card["ID"] for card in listed}
    # When the AUTH card is deactivated
    gone = http.request("POST", f"{sim.api_url}/card/deactivate/{CARD_AUTH}", headers=headers)
    # Then it leaves the list and charging it is "no such card"
    assert gone.status == 200
    after = http.request("GET", f"{sim.api_url}/cards/customer-1", headers=headers).json()
    assert CARD_AUTH not in {card["ID"] for card in after}
    _, resp = pay(http, sim, CARD_AUTH)
    assert resp.json()["code"] == 471


# ---------------------------------------------------------------- faults


def test_timeout_after_commit_commits_once(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the next auth will commit and then never answer
    sim.inject("auth", "timeout_after_commit", delay=3.0)
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When the client sends it with a short read timeout
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        post_auth(
            http,
            sim,
            token,
            auth_body(invoice, CARD_AUTH),
            timeout=urllib3.Timeout(connect=1.0, read=0.5),
        )
    # Then the auth exists at ePay exactly once, and the status API tells so
    entry = sim.ledger[invoice]
    assert entry.auth_count == 1
    assert entry.status_name == "AUTH"
    assert status(http, sim, invoice)["transaction"]["statusName"] == "AUTH"
    (journaled,) = sim.requests("auth")
    assert journaled.status == 0
    assert journaled.fault == "timeout_after_commit"


def test_500_before_commit_commits_nothing(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the next auth fails before committing
    sim.inject("auth", "500_before_commit")
    # When it is sent
    invoice, resp = pay(http, sim, CARD_AUTH)
    # Then 500 comes back and there is no transaction
    assert resp.status == 500
    assert resp.json() == {"message": "Internal error"}
    assert status(http, sim, invoice)["resultCode"] == "102"


def test_500_after_commit_and_broken_body_commit(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the next two auths commit and then answer badly
    sim.inject("auth", "500_after_commit")
    sim.inject("auth", "broken_body")
    # When they are sent
    first, failed = pay(http, sim, CARD_AUTH)
    second, broken = pay(http, sim, CARD_AUTH)
    # Then the answers are a 500 and an unparsable 200, but both transactions exist
    assert failed.status == 500
    assert broken.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.data)
    assert sim.ledger[first].status_name == "AUTH"
    assert sim.ledger[second].status_name == "AUTH"


def test_down_closes_without_answer_and_commits_nothing(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the gateway drops the next auth connection
    sim.inject("auth", "down")
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When the auth is sent
    with pytest.raises(urllib3.exceptions.ProtocolError):
        post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
    # Then nothing was committed and the next request is served normally
    assert sim.ledger == {}
    assert status(http, sim, invoice)["resultCode"] == "102"


def test_slow_fault_and_count(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the next two status requests are slow
    sim.inject("status", "slow", count=2, delay=0.3)
    # When three are sent
    started = time.monotonic()
    for _ in range(2):
        status(http, sim, "123456")
    slow_elapsed = time.monotonic() - started
    started = time.monotonic()
    status(http, sim, "123456")
    fast_elapsed = time.monotonic() - started
    # Then only the first two waited
    assert slow_elapsed >= 0.6
    assert fast_elapsed < 0.3
    assert sim.faults() == []


def test_token_fault(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the token endpoint fails once
    sim.inject("token", "500_before_commit")
    # When two tokens are requested
    first = request_token(http, sim)
    second = request_token(http, sim)
    # Then the first is a 500 and the second works
    assert first.status == 500
    assert second.status == 200


def test_inject_rejects_unknown_names(sim: EpaySimulator) -> None:
    # Given / When / Then an unknown op or fault is refused
    with pytest.raises(ValueError, match="op"):
        sim.inject("nope", "down")
    with pytest.raises(ValueError, match="fault"):
        sim.inject("auth", "nope")


# ---------------------------------------------------------------- 3-D Secure


def _acs_form(page: str, button: str) -> tuple[str, dict[str, str]]:
    form = re.search(rf'<form id="{button}-form" method="post" action="([^"]+)">(.*?)</form>', page)
    assert form, page
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2)))
    return html.unescape(form.group(1)), {k: html.unescape(v) for k, v in fields.items()}


@pytest.mark.parametrize(("button", "final"), [("approve", "AUTH"), ("fail", "REJECT")])
def test_three_ds_acs_and_confirm(
    http: urllib3.PoolManager, sim: EpaySimulator, button: str, final: str
) -> None:
    # Given an auth that needs 3-D Secure
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_3DS))
    assert resp.status == 200
    data = resp.json()
    assert data["status"] == "3D"
    secure = data["secure3D"]
    assert secure["action"] == f"{sim.base_url}/acs"
    assert sim.ledger[invoice].status_name == "3D"
    # When the browser posts PaReq/MD/TermUrl to the ACS and presses a button
    term_url = "http://127.0.0.1:9/3ds/return?charge=abc"
    page = http.request(
        "POST",
        secure["action"],
        fields={"PaReq": secure["paReq"], "MD": secure["md"], "TermUrl": term_url},
        encode_multipart=False,
    )
    assert page.status == 200
    action, fields = _acs_form(page.data.decode(), button)
    assert action == term_url
    assert fields["MD"] == secure["md"]
    # And the merchant forwards PaRes/MD to confirmPayment with the original token
    confirm = http.request(
        "POST",
        f"{sim.api_url}/payments/cards/confirmPayment?Access={token}",
        fields={"PaRes": fields["PaRes"], "MD": fields["MD"]},
        encode_multipart=False,
        redirect=False,
    )
    # Then ePay redirects with the reference or the error code, and the ledger is final
    assert confirm.status == 302
    location = confirm.headers["Location"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    entry = sim.ledger[invoice]
    assert entry.status_name == final
    if final == "AUTH":
        assert query["reference"] == [entry.reference]
        assert location.startswith("http://127.0.0.1:9/back")
    else:
        assert query["errorCode"] == ["455"]
        assert location.startswith("http://127.0.0.1:9/fail")
        assert entry.reason_code == 455


def test_three_ds_confirm_needs_the_invoice_token_and_a_genuine_pares(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a pending 3DS auth
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    secure = post_auth(http, sim, token, auth_body(invoice, CARD_3DS)).json()["secure3D"]
    # When confirmPayment gets another token, then a forged PaRes
    other = terminal_token(http, sim)
    wrong_token = http.request(
        "POST",
        f"{sim.api_url}/payments/cards/confirmPayment?Access={other}",
        fields={"PaRes": "Zm9yZ2Vk", "MD": secure["md"]},
        encode_multipart=False,
        redirect=False,
    )
    forged = http.request(
        "POST",
        f"{sim.api_url}/payments/cards/confirmPayment?Access={token}",
        fields={"PaRes": "Zm9yZ2Vk", "MD": secure["md"]},
        encode_multipart=False,
        redirect=False,
    )
    # Then both are refused and the charge still waits for 3DS
    assert wrong_token.status == 400
    assert wrong_token.json()["code"] == ERR_TOKEN_BINDING
    assert forged.status == 400
    assert forged.json()["code"] == ERR_REQUEST
    assert sim.ledger[invoice].status_name == "3D"


# ---------------------------------------------------------------- postLink


class _Receiver:
    """A loopback merchant endpoint that stores every postLink body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                with receiver.arrived:
                    receiver.bodies.append(body)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def wait_for(self, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout=timeout)
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    yield server
    server.close()


def test_postlink_success_and_failure(
    http: urllib3.PoolManager, sim: EpaySimulator, receiver: _Receiver
) -> None:
    # Given tokens carrying postLink, failurePostLink and secret_hash
    ok_invoice, bad_invoice = new_invoice(), new_invoice()
    links = {
        "postLink": f"{receiver.url}/ok",
        "failurePostLink": f"{receiver.url}/fail",
        "secret_hash": "hash-123",
    }
    ok_token = invoice_token(http, sim, ok_invoice, **links)
    bad_token = invoice_token(http, sim, bad_invoice, **links)
    # When one auth succeeds and one is declined
    post_auth(http, sim, ok_token, auth_body(ok_invoice, CARD_AUTH))
    post_auth(http, sim, bad_token, auth_body(bad_invoice, CARD_INSUFFICIENT_FUNDS))
    # Then both notifications arrive with ePay's fields
    bodies = {body["invoiceId"]: body for body in receiver.wait_for(2)}
    ok, bad = bodies[ok_invoice], bodies[bad_invoice]
    assert ok["code"] == "ok"
    assert ok["reasonCode"] == 0
    assert ok["secret_hash"] == "hash-123"
    assert ok["terminal"] == TEST_TERMINAL_ID
    assert ok["amount"] == 100
    assert ok["reference"] == sim.ledger[ok_invoice].reference
    assert bad["code"] == "error"
    assert bad["reasonCode"] == 484
    deliveries = {d.payload["invoiceId"]: d.url for d in sim.wait_for_postlinks(2)}
    assert deliveries == {ok_invoice: f"{receiver.url}/ok", bad_invoice: f"{receiver.url}/fail"}


def test_postlink_duplicates_and_non_loopback_is_never_sent(
    http: urllib3.PoolManager, sim: EpaySimulator, receiver: _Receiver
) -> None:
    # Given the simulator duplicates notifications
    sim.postlink_duplicates = 1
    try:
        invoice = new_invoice()
        token = invoice_token(http, sim, invoice, postLink=f"{receiver.url}/ok")
        # When one auth succeeds
        post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
        # Then the same notification arrives twice
        bodies = receiver.wait_for(2)
        assert len(bodies) == 2
        assert bodies[0] == bodies[1]
    finally:
        sim.postlink_duplicates = 0
    # And a postLink to a non-loopback host is recorded but never sent
    other = new_invoice()
    token = invoice_token(http, sim, other, postLink="http://192.0.2.10/hook")
    post_auth(http, sim, token, auth_body(other, CARD_AUTH))
    (refused,) = [d for d in sim.postlinks if d.payload["invoiceId"] == other]
    assert refused.status is None
    assert refused.error is not None


# ---------------------------------------------------------------- control and standalone


def test_control_endpoints(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a fault armed over HTTP
    armed = http.request(
        "POST",
        f"{sim.base_url}/_sim/faults",
        body=json.dumps({"op": "auth", "fault": "500_after_commit", "count": 1}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert armed.status == 200
    # When an auth is sent
    invoice, resp = pay(http, sim, CARD_AUTH)
    # Then the fault applied and journal and ledger are readable as JSON
    assert resp.status == 500
    ledger = http.request("GET", f"{sim.base_url}/_sim/ledger").json()
    assert ledger[invoice]["status_name"] == "AUTH"
    assert ledger[invoice]["amount"] == "100"
    journal = http.request("GET", f"{sim.base_url}/_sim/journal").json()
    assert [entry["op"] for entry in journal] == ["token", "auth"]
    assert journal[0]["form"]["invoiceID"] == invoice
    # And reset clears everything
    assert http.request("POST", f"{sim.base_url}/_sim/reset").status == 200
    assert sim.ledger == {}
    assert sim.journal == []


def test_only_loopback_hosts_are_allowed() -> None:
    # Given / When / Then a non-loopback bind address is refused
    with pytest.raises(ValueError, match="loopback"):
        EpaySimulator(host="0.0.0.0")


def test_cards_table_is_complete() -> None:
    # Given the documented test cards / Then each has an outcome
    assert len(CARDS) == 10
    assert CARDS[CARD_AUTH].outcome == "AUTH"
    assert CARDS[CARD_3DS].outcome == "3D"


def test_standalone_module_prints_its_urls() -> None:
    # Given the simulator started as a module on a free port
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.epay_sim", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        # When its first line is read
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        # Then it serves the control endpoints
        pool = urllib3.PoolManager(retries=False, timeout=2.0)
        assert pool.request("GET", f"{match.group(1)}/_sim/ledger").json() == {}
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    assert proc.returncode == 0


def test_single_stage_terminal_with_json_confirm() -> None:
    # Given a single-stage terminal whose confirmPayment answers JSON instead of a redirect
    with EpaySimulator(single_stage=True, confirm_response="json") as other:
        pool = urllib3.PoolManager(retries=False, timeout=5.0)
        # When the AUTH card is charged and a 3DS charge is approved through a GET to the ACS
        invoice, resp = pay(pool, other, CARD_AUTH)
        three_ds = new_invoice()
        token = invoice_token(pool, other, three_ds)
        secure = post_auth(pool, other, token, auth_body(three_ds, CARD_3DS)).json()["secure3D"]
        query = urllib.parse.urlencode(
            {"PaReq": secure["paReq"], "MD": secure["md"], "TermUrl": "http://127.0.0.1:9/t"}
        )
        page = pool.request("GET", f"{secure['action']}?{query}")
        _, fields = _acs_form(page.data.decode(), "approve")
        confirm = pool.request(
            "POST",
            f"{other.api_url}/payments/cards/confirmPayment?Access={token}",
            fields=fields,
            encode_multipart=False,
            redirect=False,
        )
        # Then both end as CHARGE, the confirm answering JSON with ePay's casing
        assert resp.json()["status"] == "CHARGE"
        assert confirm.status == 200
        assert confirm.json()["status"] == "CHARGE"
        assert confirm.json()["invoiceID"] == three_ds
        assert other.ledger[invoice].captured_amount == Decimal(100)
        assert other.ledger[three_ds].status_name == "CHARGE"


def test_clock_control_endpoint_expires_tokens(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a token with the default lifetime
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When an out-of-process test moves the simulator's time past it
    moved = http.request(
        "POST",
        f"{sim.base_url}/_sim/clock",
        body=b'{"advance": 1200}',
        headers={"Content-Type": "application/json"},
    )
    # Then the token no longer works
    assert moved.status == 200
    assert post_auth(http, sim, token, auth_body(invoice, CARD_AUTH)).status == 401
