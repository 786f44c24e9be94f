"""The public subscription requests (create, update, list), validated into values."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from payments.errors import (
    ValidationError,
)
from payments.shared.clock import iso
from payments.shared.fields import account_id_error, field_errors, matches
from payments.shared.money import money_str, validate_amount
from payments.shared.payer import Payer
from payments.subscriptions.calendar import (
    MAX_INTERVAL_COUNT,
    BillingInterval,
    Interval,
    parse_time,
)

LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100
START_AT_MAX_AHEAD = timedelta(days=366)
START_AT_MAX_BEHIND = timedelta(minutes=5)
LIMIT_RE = re.compile(r"\A[0-9]{1,3}\Z")  # ASCII digits: str.isdigit() also takes "²" or "٣"


@dataclass(frozen=True)
class SubscriptionRequest:
    """A validated POST /subscriptions body."""

    account_id: str
    card_id: str = field(repr=False)
    amount: Decimal
    currency: str
    description: str
    interval: BillingInterval
    start_at: datetime | None = None
    payer: Payer = field(default_factory=Payer)

    def fingerprint_fields(self) -> dict[str, str]:
        """The request's fields as strings, for the idempotency fingerprint."""
        return {
            "accountId": self.account_id,
            "cardId": self.card_id,
            "amount": money_str(self.amount),
            "currency": self.currency,
            "description": self.description,
            "interval": str(self.interval),
            "startAt": iso(self.start_at) if self.start_at else "",
            **{name: value or "" for name, value in self.payer.fields().items() if name != "name"},
        }


@dataclass(frozen=True)
class SubscriptionUpdate:
    """A validated PATCH /subscriptions/{id} body: at least one field."""

    card_id: str | None = field(default=None, repr=False)
    amount: Decimal | None = None
    description: str | None = None


# --- validation ---

_SUBSCRIPTION_FIELDS = frozenset(
    {
        "accountId",
        "cardId",
        "amount",
        "currency",
        "description",
        "interval",
        "startAt",
        "email",
        "phone",
        "backLink",
        "failureBackLink",
    }
)
_REQUIRED = ("accountId", "cardId", "amount", "currency", "description", "interval")
_UPDATE_FIELDS = frozenset({"cardId", "amount", "description"})


def parse_interval(value: Any) -> BillingInterval | str:
    """`{"unit": "day|week|month|year", "count": n}`, or a message saying what is wrong."""
    if not isinstance(value, dict) or set(value) - {"unit", "count"} or "unit" not in value:
        return 'must be an object {"unit": "day|week|month|year", "count": <integer>}'
    unit = value["unit"]
    if not isinstance(unit, str) or unit not in {i.value for i in Interval}:
        return "unit must be one of day, week, month, year"
    count = value.get("count", 1)
    limit = MAX_INTERVAL_COUNT[Interval(unit)]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        return f"count must be an integer from 1 to {limit} for {unit}"
    return BillingInterval(Interval(unit), count)


def parse_subscription_request(body: Any, now: datetime) -> SubscriptionRequest:
    """Validate a decoded JSON body (as strictly as POST /charges) or raise per field."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = field_errors(body, _SUBSCRIPTION_FIELDS, _REQUIRED)
    interval = parse_interval(body["interval"]) if body.get("interval") is not None else None
    if isinstance(interval, str):
        errors["interval"] = interval

    start_at = None
    if body.get("startAt") is not None:
        start_at = parse_time(body["startAt"])
        if start_at is None:
            errors["startAt"] = "must be an ISO-8601 time with an offset, e.g. 2027-01-31T09:00:00Z"
        elif start_at < now - START_AT_MAX_BEHIND:
            errors["startAt"] = "must not be in the past"
        elif start_at > now + START_AT_MAX_AHEAD:
            errors["startAt"] = "must be within 366 days"

    if errors:
        raise ValidationError("the request is invalid", errors)
    amount = validate_amount(body["amount"])
    assert isinstance(amount, Decimal)
    assert isinstance(interval, BillingInterval)
    return SubscriptionRequest(
        account_id=str(body["accountId"]),
        card_id=str(body["cardId"]),
        amount=amount,
        currency=str(body["currency"]),
        description=str(body["description"]),
        interval=interval,
        start_at=start_at,
        payer=Payer.from_fields(body),
    )


def parse_subscription_update(body: Any) -> SubscriptionUpdate:
    """Validate a PATCH body: `cardId`, `amount` and/or `description`."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = field_errors(body, _UPDATE_FIELDS, ())
    if not set(body) & _UPDATE_FIELDS:
        errors["body"] = "give at least one of cardId, amount, description"
    for name in _UPDATE_FIELDS & set(body):
        if body[name] is None:
            errors[name] = "must not be null"
    if errors:
        raise ValidationError("the request is invalid", errors)
    amount = validate_amount(body["amount"]) if body.get("amount") is not None else None
    return SubscriptionUpdate(
        card_id=body.get("cardId"),
        amount=amount if isinstance(amount, Decimal) else None,
        description=body.get("description"),
    )


def parse_list_query(params: Mapping[str, str] | None) -> tuple[str, int, str | None]:
    """`accountId` (required), `limit` (1-100, default 20) and an opaque `cursor`."""
    params = params or {}
    errors: dict[str, str] = {}
    unknown = sorted(set(params) - {"accountId", "limit", "cursor"})
    for name in unknown:
        errors[name[:64]] = "unknown parameter"
    account_id = params.get("accountId")
    if account_id is None:
        errors["accountId"] = "is required"
    elif (message := account_id_error(account_id)) is not None:
        errors["accountId"] = message
    raw_limit = params.get("limit", str(LIST_LIMIT_DEFAULT))
    limit = int(raw_limit) if matches(LIMIT_RE, raw_limit) else 0
    if not 1 <= limit <= LIST_LIMIT_MAX:
        errors["limit"] = f"must be an integer from 1 to {LIST_LIMIT_MAX}"
    cursor = params.get("cursor")
    if cursor is not None and decode_cursor(cursor) is None:
        errors["cursor"] = "is not a cursor this API returned"
    if errors:
        raise ValidationError("the query is invalid", errors)
    return str(account_id), limit, cursor


def encode_cursor(position: str) -> str:
    """An opaque page cursor (the listing item's sort key)."""
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The sort key inside a cursor, or None if it is not one of ours."""
    if len(cursor) > 400:
        return None
    try:
        position = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return position if position.startswith("SUB#") else None
