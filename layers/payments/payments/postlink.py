"""postLink intake (epay-api.md section 6): parse tolerantly, store first, verify, then settle.

A notification is a hint, never a fact. ePay does not sign it; the only secret in it is the
`secret_hash` chosen for that charge, of which only a digest is kept. The intake therefore:

1. refuses bodies over `MAX_NOTIFICATION_BYTES` (413, nothing stored);
2. parses the body tolerantly (JSON, or a urlencoded form; keys in any case; `reasonCode` a
   number or a string; unknown fields ignored);
3. stores it in the inbox (keyed by the SHA-256 of the exact body, so a byte-identical repeat is
   a duplicate), with `secret_hash`'s value masked, *before* anything else happens; a malformed
   body is stored too and answered 400;
4. finds the charge by invoice id (unknown: 200, kept for review, no retries invited);
5. verifies `secret_hash` in constant time against the charge's digest, and `invoiceId`, `amount`,
   `currency` and `terminal` against the charge (any mismatch: 403, nothing changes);
6. settles the charge from ePay's status API through `ChargeService.settle` (the one state
   machine), within a short deadline; if ePay cannot answer in time the charge keeps its
   reconciler schedule and the answer is still 200.

A duplicate whose stored verdict is final (malformed, forged, unknown invoice, settled) is answered
from that verdict without calling ePay; any other duplicate (still being handled, deferred,
pending) is handled again, which is safe because settling is idempotent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import parse_qsl

from payments.errors import (
    ForgedNotificationError,
    GatewayError,
    PayloadTooLargeError,
    ValidationError,
)
from payments.gateway import Deadline
from payments.models import (
    CONTROL_RE,
    INVOICE_ID_RE,
    Charge,
    ChargeStatus,
    to_money,
    utc_now,
)
from payments.service import Settlement, secret_hash_digest

MAX_NOTIFICATION_BYTES = 16 * 1024
SETTLE_BUDGET_SECONDS = 8.0
# A copy arriving while the first is still being handled (younger than this, above the function's
# 15 s timeout) is answered 200 without a second settle; an older `received` one is handled again.
IN_FLIGHT = timedelta(seconds=30)
SOURCE = "postlink"
_MAX_FIELD_CHARS = 256
_CURRENCY_RE = re.compile(r"^[A-Za-z]{3}$")
_JSON_SECRET_RE = re.compile(r'("secret_hash"\s*:\s*)"(?:[^"\\]|\\.)*"', re.IGNORECASE)
_FORM_SECRET_RE = re.compile(r"(^|&)(secret_hash=)[^&]*", re.IGNORECASE)
MASK = "***"


class Route(StrEnum):
    """Which of the two links ePay posted to (postLink or failurePostLink)."""

    SUCCESS = "success"
    FAILURE = "failure"


class Verdict(StrEnum):
    """What the intake concluded about one notification (kept on its inbox item)."""

    RECEIVED = "received"  # stored; being handled (or its handler died before deciding)
    MALFORMED = "malformed"  # not a notification we can read: 400
    FORGED = "forged"  # failed verification: 403
    UNKNOWN_INVOICE = "unknown_invoice"  # no charge has this invoice id: 200, kept for review
    SETTLED = "settled"  # the status API answered; the charge was settled (changed or not)
    PENDING = "pending"  # the status API says not final yet (or does not know the invoice)
    DEFERRED = "deferred"  # the status API could not answer in time: left to the reconciler


FINAL_VERDICTS = frozenset(
    {Verdict.MALFORMED, Verdict.FORGED, Verdict.UNKNOWN_INVOICE, Verdict.SETTLED}
)


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
    terminal: str
    secret_hash: str | None = field(repr=False)
    code: str | None = None
    transaction_id: str | None = None
    reason_code: int | None = None


@dataclass(frozen=True)
class InboxRecord:
    """A notification as first stored: the body (secret masked), where it came from, when."""

    digest: str
    body: str = field(repr=False)
    content_type: str | None
    route: Route
    source_ip: str | None
    received_at: datetime
    verdict: Verdict
    invoice_id: str | None = None
    secret_hash_digest: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StoredVerdict:
    """What an earlier delivery of the same body left in the inbox."""

    verdict: Verdict
    deliveries: int
    received_at: datetime
    charge_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class PostLinkOutcome:
    """What one delivery came to; telemetry reports it and the handler answers from it."""

    verdict: Verdict
    route: Route
    duplicate: bool
    invoice_id: str | None = None
    charge_id: str | None = None
    status: ChargeStatus | None = None
    mismatched: tuple[str, ...] = ()
    source_ip: str | None = None
    detail: str = ""


class Inbox(Protocol):
    """Where raw notifications are kept (with a TTL) before anything acts on them."""

    def put_new(self, record: InboxRecord) -> bool:
        """Store a record; False when a record with the same digest already exists."""
        ...

    def seen_again(self, digest: str, at: datetime) -> StoredVerdict:
        """Count one more delivery of a stored body and return what is stored for it."""
        ...

    def record_verdict(
        self, digest: str, verdict: Verdict, at: datetime, *, charge_id: str | None, detail: str
    ) -> None:
        """Write what the intake concluded."""
        ...


class ChargeLookup(Protocol):
    """Finding the charge a notification is about."""

    def get_by_invoice(self, invoice_id: str) -> Charge | None:
        """The charge holding this invoice id, or None."""
        ...


class Settler(Protocol):
    """The one way any signal settles a charge (ChargeService.settle)."""

    def settle(self, charge_id: str, source: str, deadline: Deadline) -> Settlement:
        """Ask the status API and apply its answer through the state machine."""
        ...


class PostLinkTelemetry(Protocol):
    """Logs and metrics of the intake; never sees the body or the secret."""

    def handled(self, outcome: PostLinkOutcome) -> None:
        """One delivery reached a verdict."""
        ...


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
    """A short single-line string from a string or an integer; None when absent or unusable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
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
    if invoice_id is None or not INVOICE_ID_RE.match(invoice_id):
        errors["invoiceId"] = "must be a string of 6 to 15 digits"

    amount: Decimal | None = None
    try:
        if fields.get("amount") is not None:
            amount = to_money(fields["amount"])
    except ValueError:
        amount = None
    if amount is None or amount <= 0:
        errors["amount"] = "must be a positive number"

    currency = _text(fields.get("currency"))
    if currency is None or not _CURRENCY_RE.match(currency):
        errors["currency"] = "must be a 3-letter currency code"

    terminal = _text(fields.get("terminal", fields.get("terminalid")))
    if terminal is None:
        errors["terminal"] = "is required"

    if errors or invoice_id is None or amount is None or currency is None or terminal is None:
        raise ValidationError("the notification is invalid", errors)
    secret = fields.get("secret_hash")
    code = _text(fields.get("code"))
    return Notification(
        invoice_id=invoice_id,
        amount=amount,
        currency=currency.upper(),
        terminal=terminal,
        secret_hash=secret if isinstance(secret, str) and secret else None,
        code=code.lower() if code else None,
        transaction_id=_text(fields.get("id")),
        reason_code=_reason_code(fields.get("reasoncode")),
    )


def mask_secret(text: str) -> str:
    """The body with the value of `secret_hash` replaced by a mask (JSON and form bodies)."""
    text = _JSON_SECRET_RE.sub(lambda m: f'{m.group(1)}"{MASK}"', text)
    return _FORM_SECRET_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def verify(notification: Notification, charge: Charge, terminal_id: str) -> tuple[str, ...]:
    """The names of the fields that do not match the stored charge (empty: authentic).

    Every check runs whatever the others say, and `secret_hash` is compared as SHA-256 hex
    digests with `hmac.compare_digest`, so the answer's timing tells nothing about the secret.
    """
    offered = secret_hash_digest(notification.secret_hash or "")
    secret_ok = hmac.compare_digest(offered, charge.secret_hash_digest)
    checks = {
        "secret_hash": secret_ok and notification.secret_hash is not None,
        "invoiceId": notification.invoice_id == charge.invoice_id,
        "amount": notification.amount == charge.amount,
        "currency": notification.currency == charge.currency.upper(),
        "terminal": notification.terminal.lower() == terminal_id.lower(),
    }
    return tuple(name for name, ok in checks.items() if not ok)


# --- the use case -----------------------------------------------------------------------------


class PostLinkService:
    """Takes ePay's postLink notifications in: store, verify, settle through the status API."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        charges: ChargeLookup,
        settler: Settler,
        terminal_id: Callable[[], str],
        telemetry: PostLinkTelemetry,
        clock: Callable[[], datetime] = utc_now,
        settle_budget: float = SETTLE_BUDGET_SECONDS,
    ) -> None:
        self._inbox = inbox
        self._charges = charges
        self._settler = settler
        self._terminal_id = terminal_id
        self._telemetry = telemetry
        self._clock = clock
        self._settle_budget = settle_budget

    def receive(self, delivery: Delivery, deadline: Deadline) -> PostLinkOutcome:
        """Store, verify and act on one delivery.

        Returns the outcome for a 200 answer; raises PayloadTooLargeError (413, not stored),
        ValidationError (400, stored) or ForgedNotificationError (403, stored).
        """
        if len(delivery.body) > MAX_NOTIFICATION_BYTES:
            raise PayloadTooLargeError(_too_large())
        digest = hashlib.sha256(delivery.body).hexdigest()
        notification: Notification | None = None
        problem: ValidationError | None = None
        try:
            notification = parse_notification(delivery.body, delivery.content_type)
        except ValidationError as exc:
            problem = exc

        now = self._clock()
        record = InboxRecord(
            digest=digest,
            body=mask_secret(delivery.body.decode("utf-8", errors="backslashreplace")),
            content_type=delivery.content_type,
            route=delivery.route,
            source_ip=delivery.source_ip,
            received_at=now,
            verdict=Verdict.MALFORMED if problem else Verdict.RECEIVED,
            invoice_id=notification.invoice_id if notification else None,
            secret_hash_digest=secret_hash_digest(notification.secret_hash)
            if notification and notification.secret_hash
            else None,
        )
        duplicate = not self._inbox.put_new(record)
        if duplicate:
            stored = self._inbox.seen_again(digest, now)
            in_flight = stored.verdict is Verdict.RECEIVED and now - stored.received_at < IN_FLIGHT
            if stored.verdict in FINAL_VERDICTS or in_flight:
                outcome = PostLinkOutcome(
                    verdict=stored.verdict,
                    route=delivery.route,
                    duplicate=True,
                    invoice_id=record.invoice_id,
                    charge_id=stored.charge_id,
                    source_ip=delivery.source_ip,
                    detail=stored.detail,
                )
                return self._answer(outcome, problem)

        if problem is not None or notification is None:
            outcome = PostLinkOutcome(
                Verdict.MALFORMED,
                delivery.route,
                duplicate,
                source_ip=delivery.source_ip,
                detail=", ".join(sorted(problem.fields)) if problem else "",
            )
            return self._answer(outcome, problem)

        outcome = self._handle(notification, delivery, duplicate, deadline)
        self._inbox.record_verdict(
            digest,
            outcome.verdict,
            self._clock(),
            charge_id=outcome.charge_id,
            detail=outcome.detail,
        )
        return self._answer(outcome, None)

    def _handle(
        self, notification: Notification, delivery: Delivery, duplicate: bool, deadline: Deadline
    ) -> PostLinkOutcome:
        base = PostLinkOutcome(
            verdict=Verdict.RECEIVED,
            route=delivery.route,
            duplicate=duplicate,
            invoice_id=notification.invoice_id,
            source_ip=delivery.source_ip,
        )
        charge = self._charges.get_by_invoice(notification.invoice_id)
        if charge is None:
            return _with(base, verdict=Verdict.UNKNOWN_INVOICE, detail="no charge has this invoice")
        base = _with(base, charge_id=charge.id, status=charge.status)
        mismatched = verify(notification, charge, self._terminal_id())
        if mismatched:
            return _with(
                base,
                verdict=Verdict.FORGED,
                mismatched=mismatched,
                detail="mismatched: " + ",".join(mismatched),
            )
        try:
            settlement = self._settler.settle(charge.id, SOURCE, self._bounded(deadline))
        except GatewayError as exc:
            # The charge keeps its nextCheckAt: the reconciler settles it later.
            return _with(base, verdict=Verdict.DEFERRED, detail=f"status API: {type(exc).__name__}")
        verdict = (
            Verdict.SETTLED if settlement.outcome in ("changed", "unchanged") else Verdict.PENDING
        )
        return _with(
            base,
            verdict=verdict,
            status=settlement.charge.status,
            detail=f"{settlement.outcome}: {settlement.charge.status.value}",
        )

    def _bounded(self, deadline: Deadline) -> Deadline:
        """The caller's deadline, but never more than the settle budget from now."""
        return Deadline(min(deadline.at, time.monotonic() + self._settle_budget))

    def _answer(self, outcome: PostLinkOutcome, problem: ValidationError | None) -> PostLinkOutcome:
        self._telemetry.handled(outcome)
        if outcome.verdict is Verdict.MALFORMED:
            raise problem or ValidationError("the notification is invalid")
        if outcome.verdict is Verdict.FORGED:
            raise ForgedNotificationError("the notification was rejected", outcome.mismatched)
        return outcome


def _with(outcome: PostLinkOutcome, **changes: Any) -> PostLinkOutcome:
    return replace(outcome, **changes)
