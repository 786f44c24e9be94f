"""Hardening of the public request rules: every value is checked whole, as it will be stored and
sent to ePay; whatever a client sends becomes a 4xx naming the field, never an exception."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payments.charges.model import CaptureMode, is_charge_id
from payments.charges.requests import parse_capture_request, parse_charge_request
from payments.errors import ValidationError
from payments.shared.fields import https_url_error, validate_idempotency_key
from payments.shared.money import to_money, validate_amount
from payments.subscriptions.calendar import parse_time
from payments.subscriptions.model import is_subscription_id, parse_renewal_message
from payments.subscriptions.requests import (
    parse_list_query,
    parse_subscription_request,
    parse_subscription_update,
)

NOW = datetime(2027, 1, 1, tzinfo=UTC)
CHARGE: dict[str, Any] = {
    "amount": Decimal("1500.00"),
    "currency": "KZT",
    "cardId": "c0000000-0000-4000-8000-000000000001",
    "accountId": "customer-42",
    "description": "Order 42",
    "invoiceId": "796507934543",
    "invoiceIdAlt": "796507934544",
    "name": "Ivan Petrov",
    "email": "ivan@example.kz",
    "phone": "77001234567",
    "backLink": "https://shop.example.kz/pay/done?order=42",
    "failureBackLink": "https://shop.example.kz/pay/failed",
}
SUBSCRIPTION: dict[str, Any] = {
    "accountId": "customer-42",
    "cardId": "c0000000-0000-4000-8000-000000000001",
    "amount": Decimal("4990.00"),
    "currency": "KZT",
    "description": "Monthly plan",
    "interval": {"unit": "month", "count": 1},
    "email": "ivan@example.kz",
    "phone": "77001234567",
    "backLink": "https://shop.example.kz/pay/done",
    "failureBackLink": "https://shop.example.kz/pay/failed",
}
CHARGE_ID = "ch_" + "0123456789abcdef" * 2
SUBSCRIPTION_ID = "sub_" + "0123456789abcdef" * 2
HUGE_AMOUNTS = [
    Decimal("1e26"),
    Decimal("1E+999999"),
    Decimal("123456789012345678901234567.5"),
    10**30,
]


def charge_error_fields(**changes: Any) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        parse_charge_request({**CHARGE, **changes}, CaptureMode.AUTO)
    return set(caught.value.fields)


def subscription_error_fields(**changes: Any) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        parse_subscription_request({**SUBSCRIPTION, **changes}, NOW)
    return set(caught.value.fields)


def test_the_valid_bodies_are_accepted_as_written() -> None:
    # Given bodies with every optional field / Then each value is kept exactly
    request = parse_charge_request(CHARGE, CaptureMode.AUTO)
    assert request.invoice_id == CHARGE["invoiceId"]
    assert request.payer.back_link == CHARGE["backLink"]
    assert parse_subscription_request(SUBSCRIPTION, NOW).payer.email == SUBSCRIPTION["email"]


# ----------------------------------------------------------------- 1. a trailing newline


@pytest.mark.parametrize(
    "field", ["invoiceId", "invoiceIdAlt", "cardId", "name", "email", "phone", "backLink"]
)
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00"])
def test_a_trailing_newline_is_not_part_of_a_valid_charge_field(field: str, suffix: str) -> None:
    # Given a valid value with a newline after it ($ matched before a final \n)
    # When the charge is parsed / Then the field is refused, not stored as another value
    assert field in charge_error_fields(**{field: CHARGE[field] + suffix})


@pytest.mark.parametrize("field", ["cardId", "email", "phone", "failureBackLink"])
def test_a_trailing_newline_is_not_part_of_a_valid_subscription_field(field: str) -> None:
    assert field in subscription_error_fields(**{field: SUBSCRIPTION[field] + "\n"})
    with pytest.raises(ValidationError) as caught:
        parse_subscription_update({field: SUBSCRIPTION[field] + "\n"})
    assert caught.value.fields


def test_a_trailing_newline_is_not_part_of_a_key_or_an_id() -> None:
    # Given an Idempotency-Key, a charge id, a subscription id with a newline after it
    with pytest.raises(ValidationError):
        validate_idempotency_key("order-42\n")
    # Then none is taken for the value before it
    assert is_charge_id(CHARGE_ID)
    assert not is_charge_id(CHARGE_ID + "\n")
    assert is_subscription_id(SUBSCRIPTION_ID)
    assert not is_subscription_id(SUBSCRIPTION_ID + "\n")
    message = json.dumps(
        {"subscriptionId": SUBSCRIPTION_ID + "\n", "cycle": 0, "attempt": 0,
         "dueAt": "2027-01-01T00:00:00Z"}
    )  # fmt: skip
    with pytest.raises(ValidationError):
        parse_renewal_message(message)


@pytest.mark.parametrize(
    "value",
    ["", "ch_1", "CH_" + "0" * 32, "ch_" + "0" * 31, "ch_" + "A" * 32, "ch_" + "0" * 32 + "0",
     "x" * 2000, "ch_" + "\u0660" * 32],
)  # fmt: skip
def test_only_the_shape_of_our_charge_ids_is_a_charge_id(value: str) -> None:
    assert not is_charge_id(value)


# ----------------------------------------------------------------- 2. undocumented 500s


@pytest.mark.parametrize("amount", HUGE_AMOUNTS)
def test_huge_amounts_are_a_validation_error_everywhere(amount: Any) -> None:
    # Given an amount Decimal.quantize cannot hold (1e26 and up) on create, capture and PATCH
    # Then each is a message naming the amount, not InvalidOperation
    assert validate_amount(amount) == "must not exceed 999999999.99"
    assert "amount" in charge_error_fields(amount=amount)
    assert "amount" in subscription_error_fields(amount=amount)
    for parse in (parse_capture_request, parse_subscription_update):
        with pytest.raises(ValidationError) as caught:
            parse({"amount": amount})
        assert "amount" in caught.value.fields


def test_tiny_amounts_are_refused_for_their_decimals() -> None:
    assert validate_amount(Decimal("1E-999999")) == "must have at most 2 decimal places"


@pytest.mark.parametrize("value", ["1e26", "1E+999999", "-1e30"])
def test_amounts_read_from_outside_stay_within_what_can_be_formatted(value: str) -> None:
    # Given an amount in a postLink or an ePay answer far beyond any payment
    # Then it is not an amount (rather than an error when it is formatted later)
    with pytest.raises(ValueError, match="not an amount"):
        to_money(value)


@pytest.mark.parametrize("field", ["currency", "language", "capture"])
@pytest.mark.parametrize("value", [["KZT"], {"a": 1}, [], {}])
def test_a_list_or_object_where_a_choice_is_expected_is_named(field: str, value: Any) -> None:
    # Given an unhashable value where one of a set of strings is expected
    # Then it is refused by name ("unhashable type" was a 500)
    assert field in charge_error_fields(**{field: value})


@pytest.mark.parametrize("unit", [["month"], {"x": 1}])
def test_a_list_or_object_as_interval_unit_is_named(unit: Any) -> None:
    assert "interval" in subscription_error_fields(interval={"unit": unit})
    assert "currency" in subscription_error_fields(currency=[unit])


@pytest.mark.parametrize(
    "field", ["accountId", "description", "name", "email", "cardId", "invoiceId", "backLink"]
)
def test_a_lone_surrogate_is_named_by_the_field_rules(field: str) -> None:
    # Given a string that is no Unicode text (a lone surrogate cannot be encoded as UTF-8)
    assert field in charge_error_fields(**{field: "ok\ud800"})


def test_a_lone_surrogate_in_a_query_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_list_query({"accountId": "customer-\udfff"})
    assert set(caught.value.fields) == {"accountId"}


@pytest.mark.parametrize("limit", ["²", "٣", "\uff11", "1\n", " 1", "+1", "1.0", "-1", "1000"])
def test_limit_is_ascii_digits_only(limit: str) -> None:
    # Given a limit that str.isdigit() takes but int() does not, or another non-integer
    with pytest.raises(ValidationError) as caught:
        parse_list_query({"accountId": "customer-42", "limit": limit})
    # Then it is named (int("²") raised ValueError: a 500)
    assert set(caught.value.fields) == {"limit"}


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+23:59"],
)
def test_a_start_that_leaves_the_calendar_when_shifted_to_utc_is_named(value: str) -> None:
    # Given a time whose UTC equivalent is before year 1 or after 9999
    assert parse_time(value) is None
    # Then startAt is refused by name (astimezone raised OverflowError)
    assert "startAt" in subscription_error_fields(startAt=value)


def test_the_calendar_edges_themselves_are_read() -> None:
    assert parse_time("9999-12-31T23:59:59Z") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)


# ----------------------------------------------------------------- 3. links


@pytest.mark.parametrize(
    "link",
    [
        "https://shop.example.kz/done?emoji=😀",
        "https://shop.example.kz/done\u2028",
        "https://shop.example.kz/done\x85",
        "https://shop.example.kz/a b",
        "https://shop.example.kz/\r\nSet-Cookie: a=b",
        'https://shop.example.kz/"quoted"',
        "https://shop.example.kz\\@evil.example/",
        "https://магазин.kz/done",
        "https://user:secret@shop.example.kz/",
        "https://user@shop.example.kz/",
        "https://shop.example.kz:99999/",
        "https://shop.example.kz:port/",
        "https://[::1/",
        "https://sh_op.example.kz/",
        "https:///path-only",
        "//shop.example.kz/relative",
        "/relative",
        "http://shop.example.kz/",
        "javascript:alert(1)",
        "https://shop.example.kz/%zz",
        "https://" + "a" * 64 + ".kz/",
    ],
)
def test_links_must_be_absolute_https_urls_of_printable_ascii(link: str) -> None:
    assert https_url_error(link) is not None
    assert "backLink" in charge_error_fields(backLink=link)
    assert "failureBackLink" in subscription_error_fields(failureBackLink=link)


@pytest.mark.parametrize(
    "link",
    [
        "https://shop.example.kz/pay/done?order=42&x=%F0%9F%98%80#top",
        "https://xn--80aaxitdbjk.kz/done",
        "https://shop.example.kz:8443/",
        "https://203.0.113.10/done",
        "https://[2001:db8::1]/done",
        "HTTPS://SHOP.EXAMPLE.KZ/",
    ],
)
def test_ascii_https_links_with_idna_hosts_and_escapes_are_accepted(link: str) -> None:
    assert https_url_error(link) is None
    assert parse_charge_request({**CHARGE, "backLink": link}, CaptureMode.AUTO).payer.back_link == (
        link
    )
