"""postLink notifications: tolerant parsing, secret masking and verification against a charge."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import parse_qsl

from payments.charges.model import secret_hash_digest
from payments.charges.terminals import TerminalNames
from payments.errors import (
    PayloadTooLargeError,
    ValidationError,
)
from payments.shared.fields import CONTROL_RE, is_unicode_text, mask_card_id
from payments.shared.money import to_money

MAX_NOTIFICATION_BYTES = 16 * 1024
# The fields of a notification the inbox keeps (epay-api.md section 6), as ePay names them.
KEPT_FIELDS = (
    "id",
    "dateTime",
    "invoiceId",
    "invoiceIdAlt",
    "amount",
    "currency",
    "terminal",
    "code",
    "reason",
    "reasonCode",
    "reference",
    "approvalCode",
    "cardMask",
    "cardType",
    "cardId",
    "issuer",
    "secure",
)
_MAX_FIELD_CHARS = 256
_CURRENCY_RE = re.compile(r"[A-Za-z]{3}")
# A charge's invoice id (6-15 digits), or a card verification's (e.g. "CARD0001": the postLink
# of saving a card, amount 0 USD), which no charge holds: it is kept as an unknown invoice.
# (Part of an inbox id: payments.charges.inbox_records; never a ".".)
NOTIFIED_INVOICE_PATTERN = r"(?:[0-9]{6,15}|[A-Za-z][A-Za-z0-9_-]{2,63})"
_NOTIFIED_INVOICE_RE = re.compile(rf"\A{NOTIFIED_INVOICE_PATTERN}\Z")


class Route(StrEnum):
    """Which of the two links ePay posted to (postLink or failurePostLink)."""

    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class Delivery:
    """One HTTP delivery of a notification, as the handler received it."""

    body: bytes = field(repr=False)
    content_type: str | None
    route: Route
    source_ip: str | None = None


@dataclass(frozen=True)
class Notification:
    """The fields of a postLink notification that verification and logs use."""

    invoice_id: str
    amount: Decimal
    currency: str
    terminal: str | None  # the UUID or the 8-digit code; None when ePay left it out
    secret_hash: str | None = field(repr=False)
    code: str | None = None
    transaction_id: str | None = None
    reason_code: int | None = None
    # What the inbox keeps for audit: ePay's own names, card id masked; never the secret, the
    # payer's contacts or location (email, phone, name, ip*) or the merchant's account id.
    kept: Mapping[str, str] = field(default_factory=dict)
    # A notification read back from the inbox (a replay) has no secret_hash, only the digest
    # that was kept of it (`stored` below); verification compares digests either way.
    kept_secret_digest: str | None = field(default=None, repr=False)

    @property
    def secret_digest(self) -> str | None:
        """The SHA-256 of the secret_hash offered (None: the notification carried none)."""
        if self.secret_hash is not None:
            return secret_hash_digest(self.secret_hash)
        return self.kept_secret_digest

    @classmethod
    def stored(cls, kept: Mapping[str, str], secret_digest: str | None) -> Notification:
        """A notification as the inbox kept it (its fields, the digest of its secret_hash),
        read by the same parser as a delivery; ValidationError if it no longer reads."""
        body = json.dumps(dict(kept)).encode("utf-8")
        parsed = parse_notification(body, "application/json")
        return replace(parsed, kept=dict(kept), kept_secret_digest=secret_digest)


# --- parsing (pure) ---------------------------------------------------------------------------


def body_bytes(body: str | None, is_base64: bool) -> bytes:
    """The exact bytes of a proxy event's body; refuses oversized bodies before decoding."""
    if body is None:
        return b""
    if len(body) > MAX_NOTIFICATION_BYTES * 2:
        raise PayloadTooLargeError(_too_large())
    if not is_base64:
        return body.encode("utf-8", errors="surrogateescape")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        # Not base64 after all: keep what arrived, parsing will call it malformed.
        return body.encode("utf-8", errors="surrogateescape")


def _too_large() -> str:
    return f"the notification must not exceed {MAX_NOTIFICATION_BYTES} bytes"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _decode_fields(body: bytes, content_type: str | None) -> Mapping[str, Any]:
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValidationError("the notification is not UTF-8 text") from exc
    if not text:
        raise ValidationError("the notification body is empty")
    ctype = (content_type or "").lower()
    if text.startswith("{"):
        try:
            data = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise ValidationError("the notification is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ValidationError("the notification must be a JSON object")
        # JSON escapes can spell lone surrogates ("\ud800"), which no UTF-8 store or log takes.
        texts = [str(k) for k in data] + [v for v in data.values() if isinstance(v, str)]
        if not all(is_unicode_text(text) for text in texts):
            raise ValidationError("the notification holds text that is not valid Unicode")
        return data
    if "json" in ctype:
        raise ValidationError("the notification must be a JSON object")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise ValidationError("the notification is neither JSON nor a urlencoded form") from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)  # the first of repeated keys wins
    return form


def _text(value: Any) -> str | None:
    """A short single-line string from a string or a number; None when absent or unusable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | Decimal):
        value = str(value)
    if not isinstance(value, str):
        return None
    text: str = value.strip()
    if not text or len(text) > _MAX_FIELD_CHARS or CONTROL_RE.search(text):
        return None
    return text


def _reason_code(value: Any) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def parse_notification(body: bytes, content_type: str | None) -> Notification:
    """Read a postLink body (JSON or urlencoded form) or raise ValidationError naming fields."""
    raw = _decode_fields(body, content_type)
    fields = {str(k).lower(): v for k, v in raw.items()}
    errors: dict[str, str] = {}

    invoice_id = _text(fields.get("invoiceid"))
    if invoice_id is None or not _NOTIFIED_INVOICE_RE.match(invoice_id):
        errors["invoiceId"] = "must be 6 to 15 digits, or a card verification's id"

    amount: Decimal | None = None
    try:
        if fields.get("amount") is not None:
            amount = to_money(fields["amount"])
    except ValueError:
        amount = None
    if amount is None or amount < 0:  # 0: a card verification (saving a card)
        errors["amount"] = "must be a number, 0 or more"

    currency = _text(fields.get("currency"))
    if currency is None or not _CURRENCY_RE.fullmatch(currency):
        errors["currency"] = "must be a 3-letter currency code"

    # The terminal's UUID or its 8-digit code; absent (or empty) is allowed: the other fields
    # and the status API verify such a notification.
    offered = fields.get("terminal", fields.get("terminalid"))
    terminal = None if offered in (None, "") else _text(offered)
    if offered not in (None, "") and terminal is None:
        errors["terminal"] = "must be a short text"

    if errors or invoice_id is None or amount is None or currency is None:
        raise ValidationError("the notification is invalid", errors)
    secret = fields.get("secret_hash")
    code = _text(fields.get("code"))
    kept = {name: text for name in KEPT_FIELDS if (text := _text(fields.get(name.lower())))}
    if "cardId" in kept:
        kept["cardId"] = mask_card_id(kept["cardId"])
    return Notification(
        invoice_id=invoice_id,
        amount=amount,
        currency=currency.upper(),
        terminal=terminal,
        secret_hash=secret if isinstance(secret, str) and secret else None,
        code=code.lower() if code else None,
        transaction_id=_text(fields.get("id")),
        reason_code=_reason_code(fields.get("reasoncode")),
        kept=kept,
    )


class Invoiced(Protocol):
    """What holds an invoice and is checked against its notifications: a charge, or a card
    setup (payments.cards)."""

    @property
    def id(self) -> str: ...

    @property
    def invoice_id(self) -> str: ...

    @property
    def amount(self) -> Decimal: ...

    @property
    def currency(self) -> str: ...

    @property
    def secret_hash_digest(self) -> str: ...

    @property
    def terminal_id(self) -> str: ...


def verify(
    notification: Notification, charge: Invoiced, terminal: TerminalNames
) -> tuple[str, ...]:
    """The names of the fields that do not match the stored charge or setup (empty: authentic).

    `terminal` matches when it is absent, is one of our terminal's names (UUID or code), or may
    be our code not learned yet (`TerminalNames.to_confirm`: the status API confirms it). Every
    check runs whatever the others say, and `secret_hash` is compared as SHA-256 hex digests
    with `hmac.compare_digest`, so the answer's timing tells nothing about the secret. A replayed
    notification offers the digest the inbox kept, checked the same way.
    """
    digest = notification.secret_digest
    offered = digest if digest is not None else secret_hash_digest("")
    secret_ok = hmac.compare_digest(offered, charge.secret_hash_digest)
    named = notification.terminal
    checks = {
        "secret_hash": secret_ok and digest is not None,
        "invoiceId": notification.invoice_id == charge.invoice_id,
        "amount": notification.amount == charge.amount,
        "currency": notification.currency == charge.currency.upper(),
        "terminal": named is None or terminal.named(named) or terminal.to_confirm(named),
    }
    return tuple(name for name, ok in checks.items() if not ok)
