"""Validation of the subscriptions API (as strict as POST /charges) and of renewal settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from payments.errors import ConfigurationError, ValidationError
from payments.subscriptions.calendar import Interval
from payments.subscriptions.model import FinalAction, parse_renewal_message
from payments.subscriptions.policy import load_renewal_policy, parse_ladder
from payments.subscriptions.requests import (
    decode_cursor,
    encode_cursor,
    parse_list_query,
    parse_subscription_request,
    parse_subscription_update,
)

NOW = datetime(2027, 1, 1, tzinfo=UTC)
BODY: dict[str, Any] = {
    "accountId": "customer-42",
    "cardId": "c0000000-0000-4000-8000-000000000001",
    "amount": Decimal("4990.00"),
    "currency": "KZT",
    "description": "Monthly plan",
    "interval": {"unit": "month", "count": 1},
}


def fields_of(body: Any) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        parse_subscription_request(body, NOW)
    return set(caught.value.fields)


def test_a_valid_request() -> None:
    # Given a valid body with a start in Almaty time and contact details / When it is parsed
    request = parse_subscription_request(
        {**BODY, "startAt": "2027-01-31T14:00:00+05:00", "email": "a@b.kz", "phone": "77001234567"},
        NOW,
    )
    # Then the amount is exact money, the interval is monthly and the start is kept in UTC
    assert request.amount == Decimal("4990.00")
    assert request.interval.unit is Interval.MONTH
    assert request.start_at == datetime(2027, 1, 31, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": Decimal("1.001")}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "kzt"}, "currency"),
        ({"cardId": "short"}, "cardId"),
        ({"accountId": " "}, "accountId"),
        ({"description": "д" * 63}, "description"),
        ({"description": "a\x00b"}, "description"),
        ({"interval": "month"}, "interval"),
        ({"interval": {"unit": "fortnight"}}, "interval"),
        ({"interval": {"unit": "month", "count": 0}}, "interval"),
        ({"interval": {"unit": "month", "count": 37}}, "interval"),
        ({"interval": {"unit": "year", "count": True}}, "interval"),
        ({"interval": {"unit": "day", "count": 1, "anchor": 5}}, "interval"),
        ({"startAt": "2027-01-31T09:00:00"}, "startAt"),
        ({"startAt": "2026-12-01T00:00:00Z"}, "startAt"),
        ({"startAt": "2029-01-01T00:00:00Z"}, "startAt"),
        ({"email": "not-an-email"}, "email"),
        ({"phone": "+7 700"}, "phone"),
        ({"backLink": "http://shop.kz"}, "backLink"),
        ({"failureBackLink": "https://"}, "failureBackLink"),
        ({"recurrent": True}, "recurrent"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    # Given a valid body with one bad field / When it is parsed / Then only that field is named
    assert fields_of({**BODY, **change}) == {field}


def test_required_fields_and_shape() -> None:
    # Given an empty body / Then every required field is named at once
    assert fields_of({}) == {"accountId", "cardId", "amount", "currency", "description", "interval"}
    # Given a JSON array instead of an object / Then it is refused
    with pytest.raises(ValidationError):
        parse_subscription_request([], NOW)


def test_update_needs_a_known_field() -> None:
    # Given an update of the amount / Then it is read
    assert parse_subscription_update({"amount": 10}).amount == 10
    # Given an empty update, an unknown field, a null amount or a bad card id / Then it is refused
    for body in ({}, {"name": "x"}, {"amount": None}, {"cardId": "x"}):
        with pytest.raises(ValidationError):
            parse_subscription_update(body)


def test_list_query_and_cursor() -> None:
    # Given only an account / Then the list's page size defaults to 20, from the start
    assert parse_list_query({"accountId": "a"}) == ("a", 20, None)
    # Given a cursor we issued / Then it round-trips to the key it was made from
    cursor = encode_cursor("SUB#2027-01-01T00:00:00.000Z#sub_x")
    assert decode_cursor(cursor) == "SUB#2027-01-01T00:00:00.000Z#sub_x"
    assert parse_list_query({"accountId": "a", "limit": "5", "cursor": cursor})[1] == 5
    # Given no account, a limit outside 1-100, a forged cursor or an unknown parameter
    # Then the query is refused
    for query in ({}, {"accountId": "a", "limit": "0"}, {"accountId": "a", "limit": "101"},
                  {"accountId": "a", "cursor": "!!"}, {"accountId": "a", "x": "1"}):  # fmt: skip
        with pytest.raises(ValidationError):
            parse_list_query(query)


def test_retry_ladder_setting() -> None:
    # Given RENEWAL_RETRY_LADDER in days, minutes or hours / Then it is read as durations
    assert parse_ladder("1d,3d,5d") == (timedelta(days=1), timedelta(days=3), timedelta(days=5))
    assert parse_ladder("30m, 6h") == (timedelta(minutes=30), timedelta(hours=6))
    # Given an empty ladder, an unknown unit, a zero step, an empty step or over ten steps
    # Then the stack's configuration is refused
    for bad in ("", "1w", "0d", "1d,,2d", ",".join(["1d"] * 11)):
        with pytest.raises(ConfigurationError):
            parse_ladder(bad)


def test_final_action_setting() -> None:
    # Given RENEWAL_FINAL_ACTION=cancelled and no ladder set / Then both apply (default 1d,3d,5d)
    policy = load_renewal_policy({"RENEWAL_FINAL_ACTION": "cancelled"})
    assert policy.final_action is FinalAction.CANCELLED
    assert len(policy.ladder) == 3
    # Given an unknown final action / Then the stack's configuration is refused
    with pytest.raises(ConfigurationError):
        load_renewal_policy({"RENEWAL_FINAL_ACTION": "delete"})


def test_renewal_messages_are_read_strictly() -> None:
    # Given a well-formed renewal message / Then its cycle key and attempt are read
    sub = "sub_" + "a" * 32
    good = f'{{"subscriptionId":"{sub}","cycle":3,"attempt":1,"dueAt":"2027-04-30T09:00:00Z"}}'
    message = parse_renewal_message(good)
    assert (message.key, message.attempt) == (f"{sub}#3", 1)
    # Given an empty or non-object body, a negative or boolean cycle, or a bad subscription id
    # Then the message is refused
    for bad in ("", "[]", good.replace('"cycle":3', '"cycle":-1'),
                good.replace('"cycle":3', '"cycle":true'), good.replace(sub, "sub_x")):  # fmt: skip
        with pytest.raises(ValidationError):
            parse_renewal_message(bad)
