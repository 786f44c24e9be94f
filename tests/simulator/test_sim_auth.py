"""Charging a saved card (``POST /payments/cards/auth``): validation, binding, outcomes."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
import urllib3

from local.epay_sim import (
    CARD_AUTH,
    CARD_CHARGE,
    CARD_EXPIRED,
    CARD_FORMAT_ERROR,
    CARD_INSUFFICIENT_FUNDS,
    CARD_ISSUER_UNAVAILABLE,
    CARD_NO_SUCH_CARD,
    CARD_STOLEN,
    ERR_INVOICE_USED,
    ERR_REQUEST,
    ERR_TOKEN_BINDING,
    EpaySimulator,
)
from tests.simulator.epay_client import (
    auth_body,
    invoice_token,
    new_invoice,
    pay,
    post_auth,
    terminal_token,
)


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
    # And it echoes the request as ePay's records do: accountId (not accountID), amountBonus,
    # description, email, phone, language and invoiceIdAlt
    assert {"id", "accountId", "amount", "currency", "reason", "intReference"} <= set(data)
    assert "accountID" not in data
    assert {"amountBonus", "description", "email", "phone", "language", "invoiceIdAlt"} <= set(data)
    assert data["amountBonus"] == 0
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
