"""Charges, money, statuses and their transitions, and the validation rules of ePay's fields."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from payments.errors import ValidationError

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("999999999.99")
CURRENCIES = frozenset({"KZT", "USD", "EUR", "RUB", "GBP", "CNY", "KGS", "UZS"})
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


class ChargeStatus(StrEnum):
    """Where a charge is in its life."""

    PROCESSING = "PROCESSING"
    REQUIRES_3DS = "REQUIRES_3DS"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    NEEDS_REVIEW = "NEEDS_REVIEW"


S = ChargeStatus
_SETTLED_BY_GATEWAY = {S.AUTHORIZED, S.CAPTURED, S.DECLINED, S.EXPIRED}
TRANSITIONS: dict[ChargeStatus, frozenset[ChargeStatus]] = {
    S.PROCESSING: frozenset(
        {S.REQUIRES_3DS, S.UNKNOWN, S.FAILED, S.CANCELLED, S.NEEDS_REVIEW, *_SETTLED_BY_GATEWAY}
    ),
    S.REQUIRES_3DS: frozenset({S.UNKNOWN, S.CANCELLED, S.NEEDS_REVIEW, *_SETTLED_BY_GATEWAY}),
    S.UNKNOWN: frozenset(
        {S.REQUIRES_3DS, S.FAILED, S.CANCELLED, S.NEEDS_REVIEW, *_SETTLED_BY_GATEWAY}
    ),
    S.AUTHORIZED: frozenset({S.CAPTURED, S.CANCELLED, S.EXPIRED, S.REFUNDED, S.NEEDS_REVIEW}),
    S.CAPTURED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.NEEDS_REVIEW}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.NEEDS_REVIEW}),
    S.NEEDS_REVIEW: frozenset(
        {S.AUTHORIZED, S.CAPTURED, S.CANCELLED, S.REFUNDED, S.DECLINED, S.EXPIRED, S.FAILED}
    ),
    S.REFUNDED: frozenset(),
    S.CANCELLED: frozenset(),
    S.DECLINED: frozenset({S.NEEDS_REVIEW}),
    S.EXPIRED: frozenset({S.NEEDS_REVIEW}),
    S.FAILED: frozenset({S.NEEDS_REVIEW}),
}


FINAL_STATUSES = frozenset(
    {S.CAPTURED, S.PARTIALLY_REFUNDED, S.REFUNDED, S.CANCELLED, S.DECLINED, S.EXPIRED, S.FAILED}
)
# The reconciler's backoff ladder: how long after each unsuccessful check the next one is due.
CHECK_LADDER = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=24),
)
# A PROCESSING charge older than this lost its function between the write and ePay's answer.
PROCESSING_SAFE_AGE = timedelta(minutes=2)
DUE_SHARDS = 8


def can_transition(current: ChargeStatus, target: ChargeStatus) -> bool:
    """True when the state machine allows moving from `current` to `target`."""
    return target in TRANSITIONS[current]


class CaptureMode(StrEnum):
    """Whether an ePay AUTH (money held) is charged at once or left for an explicit capture."""

    AUTO = "auto"
    MANUAL = "manual"


class DeclineCategory(StrEnum):
    """What a decline means for retrying (epay-api.md section 7)."""

    HARD = "hard"
    SOFT = "soft"
    AUTHENTICATION = "authentication"
    OTHER = "other"


_HARD = {465, 467, 471, 472, 478, 479, 481, 482, 483, 485, 489, 490}
_SOFT = {456, 458, 459, 484, 488, 491, 493, 494, 497}
_AUTHENTICATION = {455, 468, 473, 496}


def decline_category(code: int | None) -> DeclineCategory:
    """Classify an ePay decline code; unlisted codes are `other`."""
    if code in _HARD:
        return DeclineCategory.HARD
    if code in _SOFT:
        return DeclineCategory.SOFT
    if code in _AUTHENTICATION:
        return DeclineCategory.AUTHENTICATION
    return DeclineCategory.OTHER


def utc_now() -> datetime:
    """The real clock; use cases take a clock so tests can replace it."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """An ISO-8601 UTC timestamp with milliseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(value: Any) -> datetime:
    """Read a timestamp written by `iso` (or any ISO-8601 time with an offset or a Z)."""
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def from_iso_or_none(value: Any) -> datetime | None:
    """`from_iso`, or None for a missing (empty) value."""
    return from_iso(value) if value else None


def to_money(value: Any) -> Decimal:
    """Read an amount that may arrive as a number or a numeric string; never via float."""
    if isinstance(value, bool):
        raise ValueError("not an amount")
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError("not an amount") from exc
    if not amount.is_finite():
        raise ValueError("not an amount")
    return amount


def money_str(amount: Decimal) -> str:
    """Format an amount with exactly two decimals, as sent to ePay and shown by the API."""
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def mask_card_id(card_id: str) -> str:
    """Show only the last four characters of a saved-card id."""
    return "****" + card_id[-4:] if len(card_id) > 4 else "****"


@dataclass(frozen=True)
class EpayRef:
    """What ePay told us about the transaction behind a charge."""

    transaction_id: str | None = None
    reference: str | None = None
    approval_code: str | None = None
    card_mask: str | None = None


@dataclass(frozen=True)
class ChargeError:
    """Why a charge did not succeed."""

    code: str
    message: str
    category: str


@dataclass(frozen=True)
class ThreeDSData:
    """What the 3-D Secure step needs: ePay's secure3D object and the charge's token."""

    pa_req: str = field(repr=False)
    md: str = field(repr=False)
    action: str
    access_token: str = field(repr=False)
    token_expires_at: datetime
    term_url: str | None = None
    # The customer's page token (payments.pagetoken): a per-charge nonce to recompute it for
    # display, and the SHA-256 of the token; the token itself is never stored.
    page_nonce: str | None = field(default=None, repr=False)
    page_token_digest: str | None = field(default=None, repr=False)
    # When the redirect page was served (its token is then used up) and when the ACS's answer
    # reached TermUrl (the confirm is then ours to make, once).
    page_served_at: datetime | None = None
    returned_at: datetime | None = None


@dataclass(frozen=True)
class ChargeRequest:
    """A validated request to charge a saved card."""

    amount: Decimal
    currency: str
    card_id: str
    account_id: str
    description: str
    capture: CaptureMode
    recurrent: bool = True
    language: str = "rus"
    invoice_id: str | None = None
    invoice_id_alt: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    back_link: str | None = None
    failure_back_link: str | None = None

    def fingerprint_fields(self) -> dict[str, str]:
        """The request's fields as strings, for the idempotency fingerprint."""
        return {
            "amount": money_str(self.amount),
            "currency": self.currency,
            "cardId": self.card_id,
            "accountId": self.account_id,
            "description": self.description,
            "capture": self.capture.value,
            "recurrent": str(self.recurrent),
            "language": self.language,
            "invoiceId": self.invoice_id or "",
            "invoiceIdAlt": self.invoice_id_alt or "",
            "name": self.name or "",
            "email": self.email or "",
            "phone": self.phone or "",
            "backLink": self.back_link or "",
            "failureBackLink": self.failure_back_link or "",
        }


@dataclass(frozen=True)
class Charge:
    """One attempt to charge a saved card, as stored."""

    id: str
    invoice_id: str
    status: ChargeStatus
    amount: Decimal
    currency: str
    account_id: str
    card_id: str = field(repr=False)
    description: str
    capture: CaptureMode
    recurrent: bool
    language: str
    idempotency_key: str
    request_hash: str
    secret_hash_digest: str
    created_at: datetime
    updated_at: datetime
    version: int = 1
    invoice_id_alt: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    back_link: str | None = None
    failure_back_link: str | None = None
    captured_amount: Decimal | None = None
    epay: EpayRef = field(default_factory=EpayRef)
    error: ChargeError | None = None
    three_ds: ThreeDSData | None = None
    capture_pending: bool = False
    next_check_at: datetime | None = None
    check_attempts: int = 0


@dataclass(frozen=True)
class IdempotencyRecord:
    """Which charge an idempotency key created, and the fingerprint of that request."""

    key: str
    charge_id: str
    request_hash: str


@dataclass(frozen=True)
class HistoryEntry:
    """One transition of a charge, appended and never changed."""

    from_status: ChargeStatus | None
    to_status: ChargeStatus
    at: datetime
    source: str
    detail: str = ""


# --- validation of the public request -------------------------------------------------------

_CHARGE_FIELDS = frozenset(
    {
        "amount",
        "currency",
        "cardId",
        "accountId",
        "description",
        "invoiceId",
        "invoiceIdAlt",
        "name",
        "email",
        "phone",
        "language",
        "backLink",
        "failureBackLink",
        "recurrent",
        "capture",
    }
)
_REQUIRED = ("amount", "currency", "cardId", "accountId", "description")


def validate_amount(value: Any) -> Decimal | str:
    """Return the amount, or a message saying what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return "must be a JSON number"
    amount = Decimal(value)
    if not amount.is_finite() or amount <= 0:
        return "must be greater than 0"
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        return "must have at most 2 decimal places"
    if amount > MAX_AMOUNT:
        return f"must not exceed {MAX_AMOUNT}"
    return amount.quantize(CENT)


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


def _message(ok: bool, message: str) -> str | None:
    return None if ok else message


def _description_error(value: Any) -> str | None:
    if _text(value, max_len=DESCRIPTION_MAX_BYTES) is None:
        return "must be a non-empty string without control characters"
    return _message(
        len(value.encode("utf-8")) <= DESCRIPTION_MAX_BYTES,
        f"must be at most {DESCRIPTION_MAX_BYTES} bytes in UTF-8",
    )


def _amount_error(value: Any) -> str | None:
    amount = validate_amount(value)
    return amount if isinstance(amount, str) else None


def _link_error(value: Any) -> str | None:
    return _message(
        _https_url(value), f"must be an https URL of at most {MAX_URL_LENGTH} characters"
    )


def _invoice_error(value: Any) -> str | None:
    return _message(
        isinstance(value, str) and bool(INVOICE_ID_RE.match(value)),
        "must be a string of 6 to 15 digits",
    )


# One rule per public field, shared by every request that carries it (charges, subscriptions).
FIELD_RULES: dict[str, Callable[[Any], str | None]] = {
    "amount": _amount_error,
    "currency": lambda v: _message(
        v in CURRENCIES, "must be one of " + ", ".join(sorted(CURRENCIES))
    ),
    "cardId": lambda v: _message(
        isinstance(v, str) and bool(CARD_ID_RE.match(v)),
        "must be a saved-card id (8-64 letters, digits or dashes)",
    ),
    "accountId": lambda v: _message(
        _text(v, max_len=100) is not None, "must be a non-empty string of at most 100 characters"
    ),
    "description": _description_error,
    "invoiceId": _invoice_error,
    "invoiceIdAlt": _invoice_error,
    "name": lambda v: _message(
        isinstance(v, str) and bool(NAME_RE.match(v)),
        "must be Latin letters, spaces, dots, dashes or apostrophes (max 100)",
    ),
    "email": lambda v: _message(
        isinstance(v, str) and len(v) <= 254 and bool(EMAIL_RE.match(v)),
        "must be an e-mail address",
    ),
    "phone": lambda v: _message(
        isinstance(v, str) and bool(PHONE_RE.match(v)), "must be 10 to 15 digits, e.g. 77001234567"
    ),
    "language": lambda v: _message(v in LANGUAGES, "must be one of eng, kaz, rus"),
    "backLink": _link_error,
    "failureBackLink": _link_error,
    "recurrent": lambda v: _message(isinstance(v, bool), "must be a boolean"),
    "capture": lambda v: _message(v in {m.value for m in CaptureMode}, "must be auto or manual"),
}


def field_errors(
    body: dict[str, Any], allowed: frozenset[str], required: Iterable[str]
) -> dict[str, str]:
    """Per-field messages for unknown fields, missing required ones and FIELD_RULES failures.

    An optional field given as null counts as absent.
    """
    errors: dict[str, str] = {}
    for name in sorted(set(body) - allowed):
        errors[str(name)[:64]] = "unknown field"
    for name in required:
        if body.get(name) is None:
            errors[name] = "is required"
    for name in sorted(allowed & set(body)):
        rule = FIELD_RULES.get(name)
        value = body[name]
        if rule is not None and value is not None and (message := rule(value)) is not None:
            errors[name] = message
    return errors


def parse_charge_request(body: Any, default_capture: CaptureMode) -> ChargeRequest:
    """Validate a decoded JSON body into a ChargeRequest or raise ValidationError per field."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = field_errors(body, _CHARGE_FIELDS, _REQUIRED)
    if errors:
        raise ValidationError("the request is invalid", errors)
    amount = validate_amount(body["amount"])
    assert isinstance(amount, Decimal)
    return ChargeRequest(
        amount=amount,
        currency=str(body["currency"]),
        card_id=str(body["cardId"]),
        account_id=str(body["accountId"]),
        description=str(body["description"]),
        capture=CaptureMode(body.get("capture") or default_capture.value),
        recurrent=body.get("recurrent") is not False,
        language=str(body.get("language") or "rus"),
        invoice_id=body.get("invoiceId"),
        invoice_id_alt=body.get("invoiceIdAlt"),
        name=body.get("name"),
        email=body.get("email"),
        phone=body.get("phone"),
        back_link=body.get("backLink"),
        failure_back_link=body.get("failureBackLink"),
    )


def parse_capture_request(body: Any) -> Decimal | None:
    """Validate the optional body of a capture: `{"amount": <number>}` or nothing."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    unknown = sorted(set(body) - {"amount"})
    if unknown:
        raise ValidationError("the request is invalid", dict.fromkeys(unknown, "unknown field"))
    if body.get("amount") is None:
        return None
    amount = validate_amount(body["amount"])
    if isinstance(amount, str):
        raise ValidationError("the request is invalid", {"amount": amount})
    return amount


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
