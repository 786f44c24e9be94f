"""The rules of the public request fields every resource shares (charges, subscriptions).

Every pattern is anchored with `\\A` and `\\Z` and applied with `fullmatch`: `$` also matches
before a final newline, so `"796507934543\\n"` would pass as an invoice id that ePay and the
store then see as a different string. A value is accepted exactly as it is stored and sent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from payments.errors import ValidationError
from payments.shared.money import CURRENCIES, validate_amount

LANGUAGES = frozenset({"rus", "kaz", "eng"})
DESCRIPTION_MAX_BYTES = 125
INVOICE_ID_RE = re.compile(r"\A[0-9]{6,15}\Z")
CARD_ID_RE = re.compile(r"\A[A-Za-z0-9-]{8,64}\Z")
NAME_RE = re.compile(r"\A[A-Za-z][A-Za-z .'-]{0,99}\Z")
# RFC 5322 dot-atom local part (ASCII), LDH domain labels.
EMAIL_RE = re.compile(
    r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\Z"
)
PHONE_RE = re.compile(r"\A[0-9]{10,15}\Z")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
IDEMPOTENCY_KEY_RE = re.compile(r"\A[\x21-\x7e]{1,255}\Z")
MAX_URL_LENGTH = 2048
# A URI as RFC 3986 writes it: unreserved and reserved characters, and %XX escapes; nothing else
# (no spaces, controls, quotes, backslashes or non-ASCII: those must arrive percent-encoded).
URI_CHARS_RE = re.compile(r"\A(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+\Z")
# A DNS name of LDH labels (an IDNA name in its xn-- form), at most 253 characters.
HOSTNAME_RE = re.compile(
    r"\A(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z"
)


def mask_card_id(card_id: str) -> str:
    """Show only the last four characters of a saved-card id."""
    return "****" + card_id[-4:] if len(card_id) > 4 else "****"


def matches(pattern: re.Pattern[str], value: Any) -> bool:
    """True when `value` is a string that `pattern` matches whole (never a prefix)."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_unicode_text(value: str) -> bool:
    """True when `value` is a sequence of Unicode scalar values (no lone surrogates), so it
    encodes to UTF-8 for ePay, DynamoDB and the logs."""
    return SURROGATE_RE.search(value) is None


def _text(value: Any, *, max_len: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    if len(value) > max_len or CONTROL_RE.search(value) or not is_unicode_text(value):
        return None
    return value


def https_url_error(value: Any) -> str | None:
    """What is wrong with `value` as an absolute https URL a browser is sent to, or None.

    Printable ASCII only (RFC 3986 characters, IDNA hosts in their xn-- form, the rest
    percent-encoded), a DNS name or IP address for host, a valid port, no user info.
    """
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        return f"must be an https URL of at most {MAX_URL_LENGTH} characters"
    if not URI_CHARS_RE.fullmatch(value):
        return (
            "must be printable ASCII: percent-encode the path and query, write an "
            "international host in its IDNA (xn--) form"
        )
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError:
        return "must be an absolute https URL"
    if parts.scheme.lower() != "https" or not host:
        return "must be an absolute https URL"
    if "@" in parts.netloc:
        return "must not carry a user name or password"
    if not (HOSTNAME_RE.fullmatch(host) or _is_ip(host)):
        return "must have a valid host name"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def message_unless(ok: bool, message: str) -> str | None:
    return None if ok else message


def one_of(choices: Collection[str], message: str) -> Callable[[Any], str | None]:
    """A rule: the value is one of `choices` (a string; a list or object is refused, not hashed)."""
    return lambda value: message_unless(isinstance(value, str) and value in choices, message)


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


def _invoice_error(value: Any) -> str | None:
    return message_unless(matches(INVOICE_ID_RE, value), "must be a string of 6 to 15 digits")


def account_id_error(value: Any) -> str | None:
    """What is wrong with `value` as an accountId (the merchant's customer id), or None."""
    return message_unless(
        _text(value, max_len=100) is not None,
        "must be a non-empty string of at most 100 characters, without control characters",
    )


# One rule per public field, shared by every request that carries it (charges, subscriptions).
FIELD_RULES: dict[str, Callable[[Any], str | None]] = {
    "amount": _amount_error,
    "currency": one_of(CURRENCIES, "must be one of " + ", ".join(sorted(CURRENCIES))),
    "cardId": lambda v: message_unless(
        matches(CARD_ID_RE, v), "must be a saved-card id (8-64 letters, digits or dashes)"
    ),
    "accountId": account_id_error,
    "description": _description_error,
    "invoiceId": _invoice_error,
    "invoiceIdAlt": _invoice_error,
    "name": lambda v: message_unless(
        matches(NAME_RE, v),
        "must be Latin letters, spaces, dots, dashes or apostrophes (max 100)",
    ),
    "email": lambda v: message_unless(
        matches(EMAIL_RE, v) and len(v) <= 254, "must be an e-mail address (ASCII)"
    ),
    "phone": lambda v: message_unless(
        matches(PHONE_RE, v), "must be 10 to 15 digits, e.g. 77001234567"
    ),
    "language": one_of(LANGUAGES, "must be one of eng, kaz, rus"),
    "backLink": https_url_error,
    "failureBackLink": https_url_error,
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
    if not matches(IDEMPOTENCY_KEY_RE, value):
        raise ValidationError(
            "the Idempotency-Key header is invalid",
            {"Idempotency-Key": "must be 1-255 printable ASCII characters without spaces"},
        )
    return value
