"""What ePay accepts: field formats, money, and the rules of a ``/payments/cards/auth`` body."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from .models import TokenGrant
from .wire import ERR_REQUEST, ERR_TOKEN_BINDING, Response, error

INVOICE_RE = re.compile(r"^[0-9]{6,15}$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z .'\-]*$")
_PHONE_RE = re.compile(r"^[0-9]{7,15}$")
_CENT = Decimal("0.01")
_LANGUAGES = (None, "", "rus", "kaz", "eng")
_LINKS = ("backLink", "failureBackLink", "postLink", "failurePostLink")
MAX_DESCRIPTION_BYTES = 125


def is_money(value: Decimal) -> bool:
    """Positive, finite, at most 2 decimals."""
    return value.is_finite() and value > 0 and value == value.quantize(_CENT)


def decimal_from(value: object) -> Decimal | None:
    """A JSON number (parsed as int/Decimal) or a numeric string; None when not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _matches(value: object, pattern: re.Pattern[str]) -> bool:
    return isinstance(value, str) and pattern.match(value) is not None


def _blank_or_matches(value: object, pattern: re.Pattern[str]) -> bool:
    return value in (None, "") or _matches(value, pattern)


def _identity_problem(body: dict[str, Any]) -> str | None:
    """Invoice, money and terminal fields."""
    if not _matches(body.get("invoiceId"), INVOICE_RE):
        return "invoiceId must be a string of 6-15 digits"
    if not _blank_or_matches(body.get("invoiceIdAlt"), INVOICE_RE):
        return "invoiceIdAlt must be a string of 6-15 digits"
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        return "amount must be a number"
    if not is_money(Decimal(amount)):
        return "amount must be positive with at most 2 decimals"
    if not _matches(body.get("currency"), CURRENCY_RE):
        return "currency must be an ISO 4217 letter code"
    terminal_id = body.get("terminalId")
    if not isinstance(terminal_id, str) or not terminal_id:
        return "terminalId is required"
    return None


def _order_problem(body: dict[str, Any]) -> str | None:
    """Description, payment type, card and account."""
    description = body.get("description", "")
    if not isinstance(description, str):
        return "description must be a string"
    if len(description.encode("utf-8")) > MAX_DESCRIPTION_BYTES:
        return f"description is longer than {MAX_DESCRIPTION_BYTES} bytes"
    if body.get("paymentType") != "cardId":
        return "paymentType must be 'cardId'"
    card = body.get("cardId")
    if not isinstance(card, dict) or not isinstance(card.get("id"), str) or not card["id"]:
        return 'cardId must be an object {"id": "<card id>"}'
    if not isinstance(body.get("accountId", ""), str):
        return "accountId must be a string"
    return None


def _payer_problem(body: dict[str, Any]) -> str | None:
    """Payer details, language, the recurrent flag and the links."""
    if not _blank_or_matches(body.get("name"), _NAME_RE):
        return "name must be Latin letters"
    if not _blank_or_matches(body.get("phone"), _PHONE_RE):
        return "phone must be digits"
    email = body.get("email")
    if email not in (None, "") and (not isinstance(email, str) or "@" not in email):
        return "invalid email"
    if body.get("language") not in _LANGUAGES:
        return "language must be rus, kaz or eng"
    recurrent = body.get("recurrent")
    if recurrent is not None and not isinstance(recurrent, bool):
        return "recurrent must be a boolean"
    for link in _LINKS:
        if not isinstance(body.get(link, ""), str):
            return f"{link} must be a string"
    return None


def _binding_problem(body: dict[str, Any], grant: TokenGrant) -> str | None:
    """Where a well-formed body differs from what its token is bound to."""
    if grant.invoice_id is None:
        return "the token is not bound to an invoice (request it with invoiceID)"
    if body["invoiceId"] != grant.invoice_id:
        return "invoiceId differs from the token's invoiceID"
    if grant.amount is None or Decimal(body["amount"]) != grant.amount:
        return "amount differs from the token's amount"
    if body["currency"] != grant.currency:
        return "currency differs from the token's currency"
    if body["terminalId"] != grant.terminal:
        return "terminalId differs from the token's terminal"
    return None


def auth_problem(body: dict[str, Any], grant: TokenGrant) -> Response | None:
    """ePay's refusal of an auth body (``ERR_REQUEST`` or ``ERR_TOKEN_BINDING``), or None."""
    for check in (_identity_problem, _order_problem, _payer_problem):
        problem = check(body)
        if problem is not None:
            return error(ERR_REQUEST, problem)
    mismatch = _binding_problem(body, grant)
    return None if mismatch is None else error(ERR_TOKEN_BINDING, mismatch)
