"""Validation of charge requests, decline categories, the state machine and exact-money JSON."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from payments.charges.declines import DeclineCategory
from payments.charges.model import TRANSITIONS, CaptureMode, ChargeStatus, can_transition
from payments.charges.requests import parse_capture_request, parse_charge_request
from payments.epay.codes import decline_category
from payments.errors import ValidationError
from payments.shared import jsonutil
from payments.shared.fields import mask_card_id, validate_idempotency_key

VALID: dict[str, Any] = {
    "amount": Decimal("1500.50"),
    "currency": "KZT",
    "cardId": "c0000000-0000-4000-8000-000000000001",
    "accountId": "customer-42",
    "description": "Order 42",
}


def test_valid_request_gets_defaults() -> None:
    # Given a minimal valid body / When it is parsed
    request = parse_charge_request(dict(VALID), CaptureMode.AUTO)
    # Then the defaults of the API apply
    assert request.amount == Decimal("1500.50")
    assert request.recurrent is True
    assert request.language == "rus"
    assert request.capture is CaptureMode.AUTO


def test_default_capture_comes_from_the_stack_setting_and_can_be_overridden() -> None:
    # Given a stack set to manual capture / When a body names no capture / Then it is manual
    assert parse_charge_request(dict(VALID), CaptureMode.MANUAL).capture is CaptureMode.MANUAL
    # When a body asks for auto capture / Then the body wins
    body = {**VALID, "capture": "auto"}
    assert parse_charge_request(body, CaptureMode.MANUAL).capture is CaptureMode.AUTO


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", Decimal(0)),
        ("amount", Decimal("-1")),
        ("amount", Decimal("10.001")),
        ("amount", "100"),
        ("amount", True),
        ("amount", Decimal("1000000000")),
        ("currency", "XXX"),
        ("currency", 398),
        ("cardId", 12345),
        ("cardId", "short"),
        ("cardId", {"id": "c0000000-0000-4000-8000-000000000001"}),
        ("accountId", ""),
        ("accountId", "x" * 101),
        ("description", "д" * 63),
        ("description", ""),
        ("description", "line\nbreak"),
        ("invoiceId", "12345"),
        ("invoiceId", "1234567890123456"),
        ("invoiceId", 123456),
        ("invoiceId", "12345a"),
        ("invoiceIdAlt", "abc"),
        ("name", "Иван"),
        ("email", "not-an-email"),
        ("phone", "+7 700 123"),
        ("language", "en"),
        ("backLink", "http://shop.example/ok"),
        ("failureBackLink", "javascript:alert(1)"),
        ("recurrent", "yes"),
        ("capture", "later"),
        ("surprise", 1),
    ],
)
def test_each_invalid_field_is_named(field: str, value: Any) -> None:
    # Given a valid body with one bad field
    body = {**VALID, field: value}
    # When it is parsed / Then the error names that field
    with pytest.raises(ValidationError) as caught:
        parse_charge_request(body, CaptureMode.AUTO)
    assert field in caught.value.fields


def test_description_limit_is_in_utf8_bytes() -> None:
    # Given the 125-byte description limit (ePay's, in UTF-8)
    # Then 62 Cyrillic letters are 124 bytes (accepted); 63 are 126 bytes (rejected)
    ok = parse_charge_request({**VALID, "description": "д" * 62}, CaptureMode.AUTO)
    assert ok.description == "д" * 62
    with pytest.raises(ValidationError):
        parse_charge_request({**VALID, "description": "д" * 63}, CaptureMode.AUTO)


def test_missing_fields_are_each_reported() -> None:
    # Given an empty body / When it is parsed / Then every required field is named at once
    with pytest.raises(ValidationError) as caught:
        parse_charge_request({}, CaptureMode.AUTO)
    assert set(caught.value.fields) == {"amount", "currency", "cardId", "accountId", "description"}


def test_body_must_be_an_object() -> None:
    # Given a JSON array instead of an object / When it is parsed / Then it is refused
    with pytest.raises(ValidationError):
        parse_charge_request([VALID], CaptureMode.AUTO)


def test_invoice_id_keeps_leading_zeros() -> None:
    # Given the merchant's invoice id with leading zeros / Then it is kept as written
    request = parse_charge_request({**VALID, "invoiceId": "000123456"}, CaptureMode.AUTO)
    assert request.invoice_id == "000123456"


def test_capture_body() -> None:
    # Given no body / Then the whole authorised amount is captured
    assert parse_capture_request(None) is None
    # Given an amount / Then it is read as money with two decimals
    assert parse_capture_request({"amount": Decimal("10.5")}) == Decimal("10.50")
    # Given a zero amount, or an unknown field / Then it is refused
    with pytest.raises(ValidationError):
        parse_capture_request({"amount": 0})
    with pytest.raises(ValidationError):
        parse_capture_request({"amount": 1, "extra": 1})


@pytest.mark.parametrize("key", [None, "", "has space", "x" * 256, "ключ"])
def test_bad_idempotency_keys(key: str | None) -> None:
    # Given a missing, empty, spaced, too long or non-ASCII Idempotency-Key / Then it is refused
    with pytest.raises(ValidationError):
        validate_idempotency_key(key)


@pytest.mark.parametrize(
    ("code", "category"),
    [
        (484, DeclineCategory.SOFT),
        (493, DeclineCategory.SOFT),
        (483, DeclineCategory.HARD),
        (478, DeclineCategory.HARD),
        (471, DeclineCategory.HARD),
        (455, DeclineCategory.AUTHENTICATION),
        (477, DeclineCategory.OTHER),
        (None, DeclineCategory.OTHER),
    ],
)
def test_decline_categories(code: int | None, category: DeclineCategory) -> None:
    # Given ePay's decline code / Then it falls in its retry category
    assert decline_category(code) is category


def test_state_machine_never_moves_final_states_backwards() -> None:
    S = ChargeStatus
    # Given an unclear charge / Then it can become UNKNOWN and later be settled CAPTURED
    assert can_transition(S.PROCESSING, S.UNKNOWN)
    assert can_transition(S.UNKNOWN, S.CAPTURED)
    # Given a final or unclear charge / Then it never goes back to another outcome or PROCESSING
    assert not can_transition(S.CAPTURED, S.DECLINED)
    assert not can_transition(S.DECLINED, S.CAPTURED)
    assert not can_transition(S.UNKNOWN, S.PROCESSING)
    # And REFUNDED is the end, and every status has its row in the table
    assert TRANSITIONS[S.REFUNDED] == frozenset()
    assert set(TRANSITIONS) == set(S)


def test_money_json_is_a_number_with_two_decimals() -> None:
    # Given an amount as Decimal / When it is written as JSON
    text = jsonutil.dumps({"amount": Decimal("1500.5"), "n": 1, "s": "ä", "z": None})
    # Then it is a JSON number with two decimals, read back exactly
    assert text == '{"amount":1500.50,"n":1,"s":"ä","z":null}'
    assert jsonutil.loads(text)["amount"] == Decimal("1500.50")
    # Given an amount as a float / Then it is refused (no binary money)
    with pytest.raises(TypeError):
        jsonutil.dumps({"amount": 1.5})


def test_card_ids_are_masked() -> None:
    # Given a saved card's id / Then only its last four characters are shown
    assert mask_card_id("c0000000-0000-4000-8000-000000000001") == "****0001"
