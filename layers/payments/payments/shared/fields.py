"""The rules of the public request fields every resource shares (charges, subscriptions)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from payments.errors import ValidationError
from payments.shared.money import CURRENCIES, validate_amount

LANGUAGES = frozenset({"rus", "kaz", "eng"})
DESCRIPTION_MAX_BYTES = 125
INVOICE_ID_RE = re.compile(r"^[0-9]{6,15}$")
CARD_ID_RE = re.compile(r"^[A-Za-z0-9-]{8,64}$")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z .'-]{0,99}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
PHONE_RE = re.compile(r"^[0-9]{10,15}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_URL_LENGTH = 2048


def mask_card_id(card_id: str) -> str:
    """Show only the last four characters of a saved-card id."""
    return "****" + card_id[-4:] if len(card_id) > 4 else "****"


def _text(value: Any, *, max_len: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    if len(value) > max_len or CONTROL_RE.search(value):
        return None
    return value


def _https_url(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH or CONTROL_RE.search(value):
        return False
    parts = urlsplit(value)
    return parts.scheme == "https" and bool(parts.hostname)


def message_unless(ok: bool, message: str) -> str | None:
    return None if ok else message


def _description_error(value: Any) -> str | None:
    if _text(value, max_len=DESCRIPTION_MAX_BYTES) is None:
        return "must be a non-empty string without control characters"
    return message_unless(
        len(value.encode("utf-8")) <= DESCRIPTION_MAX_BYTES,
        f"must be at most {DESCRIPTION_MAX_BYTES} bytes in UTF-8",
    )


def _amount_error(value: Any) -> str | None:
    amount = validate_amount(value)
    return amount if isinstance(amount, str) else None


def _link_error(value: Any) -> str | None:
    return message_unless(
        _https_url(value), f"must be an https URL of at most {MAX_URL_LENGTH} characters"
    )


def _invoice_error(value: Any) -> str | None:
    return message_unless(
        isinstance(value, str) and bool(INVOICE_ID_RE.match(value)),
        "must be a string of 6 to 15 digits",
    )


# One rule per public field, shared by every request that carries it (charges, subscriptions).
FIELD_RULES: dict[str, Callable[[Any], str | None]] = {
    "amount": _amount_error,
    "currency": lambda v: message_unless(
        v in CURRENCIES, "must be one of " + ", ".join(sorted(CURRENCIES))
    ),
    "cardId": lambda v: message_unless(
        isinstance(v, str) and bool(CARD_ID_RE.match(v)),
        "must be a saved-card id (8-64 letters, digits or dashes)",
    ),
    "accountId": lambda v: message_unless(
        _text(v, max_len=100) is not None, "must be a non-empty string of at most 100 characters"
    ),
    "description": _description_error,
    "invoiceId": _invoice_error,
    "invoiceIdAlt": _invoice_error,
    "name": lambda v: message_unless(
        isinstance(v, str) and bool(NAME_RE.match(v)),
        "must be Latin letters, spaces, dots, dashes or apostrophes (max 100)",
    ),
    "email": lambda v: message_unless(
        isinstance(v, str) and len(v) <= 254 and bool(EMAIL_RE.match(v)),
        "must be an e-mail address",
    ),
    "phone": lambda v: message_unless(
        isinstance(v, str) and bool(PHONE_RE.match(v)), "must be 10 to 15 digits, e.g. 77001234567"
    ),
    "language": lambda v: message_unless(v in LANGUAGES, "must be one of eng, kaz, rus"),
    "backLink": _link_error,
    "failureBackLink": _link_error,
    "recurrent": lambda v: message_unless(isinstance(v, bool), "must be a boolean"),
}


def field_errors(
    body: dict[str, Any],
    allowed: frozenset[str],
    required: Iterable[str],
    rules: Mapping[str, Callable[[Any], str | None]] = FIELD_RULES,
) -> dict[str, str]:
    """Per-field messages: unknown fields, missing required ones, and failures of `rules`.

    An optional field given as null counts as absent.
    """
    errors: dict[str, str] = {}
    for name in sorted(set(body) - allowed):
        errors[str(name)[:64]] = "unknown field"
    for name in required:
        if body.get(name) is None:
            errors[name] = "is required"
    for name in sorted(allowed & set(body)):
        rule = rules.get(name)
        value = body[name]
        if rule is not None and value is not None and (message := rule(value)) is not None:
            errors[name] = message
    return errors


def validate_idempotency_key(value: str | None) -> str:
    """Return the key or raise: 1-255 printable ASCII characters, no spaces."""
    if value is None:
        raise ValidationError(
            "the Idempotency-Key header is required", {"Idempotency-Key": "is required"}
        )
    if not IDEMPOTENCY_KEY_RE.match(value):
        raise ValidationError(
            "the Idempotency-Key header is invalid",
            {"Idempotency-Key": "must be 1-255 printable ASCII characters without spaces"},
        )
    return value
