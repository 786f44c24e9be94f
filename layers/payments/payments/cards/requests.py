"""The public card requests (create a setup, list cards), validated into values."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from payments.cards.model import VERIFY_AMOUNT, VERIFY_CURRENCY, SetupMode
from payments.errors import ValidationError
from payments.shared.fields import CARD_ID_RE, FIELD_RULES, field_errors, matches, one_of
from payments.shared.money import money_str, validate_amount

DEFAULT_DESCRIPTION = "Card verification"
MAX_PAGE = 100
DEFAULT_PAGE = 20


@dataclass(frozen=True)
class SetupRequest:
    """A validated request to save a card through ePay's page."""

    account_id: str
    back_link: str
    mode: SetupMode
    amount: Decimal
    currency: str
    description: str
    language: str = "rus"
    failure_back_link: str | None = None

    def fingerprint_fields(self) -> dict[str, str]:
        """The request's fields as strings, for the idempotency fingerprint."""
        return {
            "accountId": self.account_id,
            "backLink": self.back_link,
            "failureBackLink": self.failure_back_link or "",
            "mode": self.mode.value,
            "amount": money_str(self.amount),
            "currency": self.currency,
            "description": self.description,
            "language": self.language,
        }


_SETUP_FIELDS = frozenset(
    {
        "accountId",
        "backLink",
        "failureBackLink",
        "language",
        "description",
        "mode",
        "amount",
        "currency",
    }
)
_SETUP_RULES = {
    **FIELD_RULES,
    "mode": one_of(frozenset(m.value for m in SetupMode), "must be verify or pay"),
}


def parse_setup_request(body: Any) -> SetupRequest:
    """Validate a decoded JSON body into a SetupRequest or raise ValidationError per field.

    `verify` saves the card with a zero-amount verification (0 USD, as ePay's page takes it):
    an amount or currency other than that is refused. `pay` needs an amount and a currency.
    """
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = field_errors(body, _SETUP_FIELDS, ("accountId", "backLink", "mode"), _SETUP_RULES)
    mode = body.get("mode")
    if mode == SetupMode.VERIFY.value:
        if body.get("amount") not in (None, 0):
            errors["amount"] = "must be absent (or 0) for a verification"
        if body.get("currency") not in (None, VERIFY_CURRENCY):
            errors["currency"] = f"must be absent (or {VERIFY_CURRENCY}) for a verification"
    elif mode == SetupMode.PAY.value:
        for name in ("amount", "currency", "description"):
            if body.get(name) is None:
                errors.setdefault(name, "is required when mode is pay")
    if errors:
        raise ValidationError("the request is invalid", errors)
    setup_mode = SetupMode(str(mode))
    if setup_mode is SetupMode.VERIFY:
        amount, currency = VERIFY_AMOUNT, VERIFY_CURRENCY
    else:
        parsed = validate_amount(body["amount"])
        assert isinstance(parsed, Decimal)
        amount, currency = parsed, str(body["currency"])
    return SetupRequest(
        account_id=str(body["accountId"]),
        back_link=str(body["backLink"]),
        mode=setup_mode,
        amount=amount,
        currency=currency,
        description=str(body.get("description") or DEFAULT_DESCRIPTION),
        language=str(body.get("language") or "rus"),
        failure_back_link=body.get("failureBackLink"),
    )


# --- reading path and query parameters -----------------------------------------------------


def is_card_id(value: str) -> bool:
    """True for a string shaped like an ePay card id (anything else is no card: a 404)."""
    return matches(CARD_ID_RE, value)


@dataclass(frozen=True)
class ListQuery:
    """A page of an account's cards: how many, from where, and whether to ask ePay first."""

    limit: int = DEFAULT_PAGE
    cursor: dict[str, str] | None = None
    refresh: bool = False


def parse_list_query(query: dict[str, str], account_id: str) -> ListQuery:
    """`limit` (1-100), an opaque `cursor` from an earlier page of the same account, and
    `refresh` (true/false); anything else is refused."""
    errors: dict[str, str] = {}
    for name in sorted(set(query) - {"limit", "cursor", "refresh"}):
        errors[name[:64]] = "unknown parameter"
    limit = DEFAULT_PAGE
    raw_limit = query.get("limit")
    if raw_limit is not None:
        if raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_PAGE:
            limit = int(raw_limit)
        else:
            errors["limit"] = f"must be a whole number from 1 to {MAX_PAGE}"
    refresh = query.get("refresh", "false")
    if refresh not in ("true", "false"):
        errors["refresh"] = "must be true or false"
    cursor = None
    if query.get("cursor") is not None:
        cursor = decode_cursor(query["cursor"], account_id)
        if cursor is None:
            errors["cursor"] = "is not a cursor of this account's card list"
    if errors:
        raise ValidationError("the request is invalid", errors)
    return ListQuery(limit=limit, cursor=cursor, refresh=refresh == "true")


_CURSOR_KEYS = ("pk", "sk", "cardAccount", "cardSort")


def encode_cursor(position: dict[str, str]) -> str:
    """An opaque cursor for the next page (the last position read)."""
    raw = json.dumps({k: position[k] for k in _CURSOR_KEYS}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, account_id: str) -> dict[str, str] | None:
    """The position a cursor names, or None when it is not one of this account's."""
    if len(cursor) > 1024:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or set(data) != set(_CURSOR_KEYS):
        return None
    if not all(isinstance(v, str) for v in data.values()) or data["cardAccount"] != account_id:
        return None
    if not data["pk"].startswith("CARD#") or data["sk"] != "CARD":
        return None
    return {k: str(v) for k, v in data.items()}


def is_account_id(value: str) -> bool:
    """True for a string that can be an accountId (anything else is no account: a 404)."""
    return FIELD_RULES["accountId"](value) is None
