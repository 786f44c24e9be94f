"""Reading ePay's answers: HTTP outcomes to results or errors, tolerant of casing and types.

An auth refused with an error code (a 4xx `{code, message}`, or a 2xx body with a non-zero
`code` and no status) is a decline only when ePay documents the code as final
(payments.epay.codes); any other code leaves the outcome unknown, for the status API to settle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from payments.charges.payment_gateway import (
    AuthResult,
    ConfirmResult,
    GatewayStatus,
    Secure3D,
    StatusResult,
    TransactionStatus,
)
from payments.epay import codes
from payments.errors import (
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
)
from payments.shared import jsonutil
from payments.shared.money import to_money

Operation = Literal["token", "auth", "status", "capture", "confirm", "cards"]
# The statuses a 200 answer of the auth endpoint may carry (epay-api.md section 2).
_AUTH_ANSWERS = frozenset({GatewayStatus.AUTH, GatewayStatus.CHARGE, GatewayStatus.THREE_DS})
# Operations that change nothing at ePay: safe to retry, and a failure means "unavailable".
SAFE_OPERATIONS: frozenset[str] = frozenset({"token", "status", "cards"})
# The card list's answer for an account without saved cards ("Запись не найдена!").
NO_SUCH_RECORD = 1373


# Operations that move money on an existing transaction, and ePay's answer when it refuses one.
MONEY_OPERATIONS = frozenset({"capture", "refund", "cancel"})
OPERATION_FAILED = 100


def lower_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in data.items()}


def opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def opt_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def opt_money(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return to_money(value)
    except ValueError:
        return None


def refusal(
    operation: str, code: int | None, message: str, http_status: int | None
) -> GatewayError:
    """What an auth refused with `code` means: a decline (with its category) when ePay documents
    the code as final; otherwise nobody knows whether the money moved (ask the status API)."""
    row = codes.lookup(code)
    if row is not None and row.final:
        return GatewayRejectedError(
            message,
            operation=operation,
            gateway_code=code,
            http_status=http_status,
            decline_category=row.category.value,
        )
    reading = "not final" if row is not None else "not in ePay's table"
    return GatewayUnknownOutcomeError(
        f"ePay {operation}: code {code} is {reading} ({message[:80]})",
        operation=operation,
        http_status=http_status,
    )


def interpret(
    operation: str, status: int | None, body: bytes, error: Exception | None = None
) -> dict[str, Any]:
    """`read`, for answers that are JSON objects (anything else reads as `{}`)."""
    parsed = read(operation, status, body, error)
    result: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
    return result


def read(operation: str, status: int | None, body: bytes, error: Exception | None = None) -> Any:
    """Map one HTTP outcome (or transport error) to parsed JSON or one of our errors.

    Safe operations (token, status, cards) turn every ambiguity into GatewayUnavailableError
    (try again); the others (auth, capture) into GatewayUnknownOutcomeError (ask the status
    API). A 4xx is a refusal: for the auth, a decline only with a final code (see `refusal`).
    """
    ambiguous = (
        GatewayUnavailableError if operation in SAFE_OPERATIONS else (GatewayUnknownOutcomeError)
    )
    if error is not None:
        # A refused or timed-out connect means the request never left: nothing happened at ePay.
        if isinstance(error, NewConnectionError | ConnectTimeoutError):
            raise GatewayUnavailableError(
                f"ePay {operation}: could not connect ({type(error).__name__})",
                operation=operation,
            ) from error
        raise ambiguous(
            f"ePay {operation}: no answer ({type(error).__name__})", operation=operation
        ) from error
    assert status is not None
    if status == 429 or status >= 500:
        raise ambiguous(f"ePay {operation}: HTTP {status}", operation=operation, http_status=status)
    parsed: Any
    try:
        parsed = jsonutil.loads(body) if body.strip() else {}
    except ValueError as exc:
        if 400 <= status < 500:
            parsed = {}
        else:
            raise ambiguous(
                f"ePay {operation}: unparsable answer", operation=operation, http_status=status
            ) from exc
    if 400 <= status < 500:
        fields = lower_keys(parsed) if isinstance(parsed, dict) else {}
        code = opt_int(fields.get("code"))
        message = str(fields.get("message") or fields.get("error") or f"HTTP {status}")[:200]
        if operation == "auth":
            raise refusal(operation, code, message, status)
        # For an operation that moves money, only ePay's documented refusal (code 100) or a
        # final code says the money did not move; anything else is for the status API to tell.
        documented = code in (None, OPERATION_FAILED) or codes.is_final(code)
        if operation in MONEY_OPERATIONS and not documented:
            raise refusal(operation, code, message, status)
        raise GatewayRejectedError(
            message, operation=operation, gateway_code=code, http_status=status
        )
    if not 200 <= status < 300:
        raise ambiguous(f"ePay {operation}: HTTP {status}", operation=operation, http_status=status)
    return parsed


def interpret_confirm(
    status: int | None, location: str | None, body: bytes, error: Exception | None = None
) -> ConfirmResult:
    """Map the confirm endpoint's answer: a 3xx's Location query (`reference=` / `errorCode=`),
    else `interpret`'s rules (4xx rejected, 5xx/timeout unknown) and a JSON body's fields."""
    if error is None and status is not None and 300 <= status < 400:
        if not location:
            raise GatewayUnknownOutcomeError(
                f"ePay confirm: HTTP {status} without Location",
                operation="confirm",
                http_status=status,
            )
        query = lower_keys(dict(parse_qsl(urlsplit(location).query, keep_blank_values=True)))
        return ConfirmResult(
            reference=opt_str(query.get("reference")),
            error_code=opt_str(query.get("errorcode")),
        )
    fields = lower_keys(interpret("confirm", status, body, error))
    error_code = opt_str(fields.get("errorcode"))
    code = opt_int(fields.get("code"))
    state = GatewayStatus.parse(fields.get("status"))
    if error_code is None and code and state not in _AUTH_ANSWERS:
        error_code = str(code)
    return ConfirmResult(reference=opt_str(fields.get("reference")), error_code=error_code)


def auth_result(data: dict[str, Any]) -> AuthResult:
    fields = lower_keys(data)
    raw_status = str(fields.get("status") or "").upper()
    status = GatewayStatus.parse(raw_status)
    secure = fields.get("secure3d")
    secure3d = None
    if isinstance(secure, dict) and status is GatewayStatus.THREE_DS:
        s = lower_keys(secure)
        if not (s.get("pareq") and s.get("md") and s.get("action")):
            raise GatewayUnknownOutcomeError("ePay auth: incomplete secure3D", operation="auth")
        secure3d = Secure3D(
            pa_req=str(s["pareq"]),
            md=str(s["md"]),
            action=str(s["action"]),
            term_url=opt_str(s.get("termurl")),
        )
    if status not in _AUTH_ANSWERS or (status is GatewayStatus.THREE_DS and secure3d is None):
        code = opt_int(fields.get("code"))
        if code:  # a 2xx that is an error answer: {code, message}
            raise refusal("auth", code, str(fields.get("message") or raw_status)[:200], None)
        raise GatewayUnknownOutcomeError(
            f"ePay auth: unexpected status {raw_status[:20]!r}", operation="auth"
        )
    assert status is not None
    return AuthResult(
        status=status,
        transaction_id=opt_str(fields.get("id")),
        invoice_id=opt_str(fields.get("invoiceid")),
        reference=opt_str(fields.get("reference")),
        approval_code=opt_str(fields.get("approvalcode")),
        card_mask=opt_str(fields.get("cardmask")),
        amount=opt_money(fields.get("amount")),
        currency=opt_str(fields.get("currency")),
        secure3d=secure3d,
    )


def status_result(data: dict[str, Any]) -> StatusResult:
    """A status answer: resultCode, and for 100 the transaction with its amounts read together,
    both names of its terminal and the decline category of its reason code."""
    fields = lower_keys(data)
    code = str(fields.get("resultcode") or "").strip()
    transaction = fields.get("transaction")
    parsed = None
    if code == "100" and isinstance(transaction, dict):
        t = lower_keys(transaction)
        reason_code = opt_int(t.get("reasoncode"))
        terminal_id = opt_str(t.get("terminalid"))
        terminal = opt_str(t.get("terminal"))
        parsed = TransactionStatus(
            transaction_id=opt_str(t.get("id")),
            invoice_id=opt_str(t.get("invoiceid")),
            status_name=str(t.get("statusname") or "").upper()[:40],
            amount=opt_money(t.get("amount")),
            currency=opt_str(t.get("currency")),
            reference=opt_str(t.get("reference")),
            approval_code=opt_str(t.get("approvalcode")),
            card_mask=opt_str(t.get("cardmask")),
            reason=opt_str(t.get("reason")),
            reason_code=reason_code,
            original_amount=opt_money(t.get("orgamount")),
            returned_amount=opt_money(t.get("payoutamount")),
            bonus_amount=opt_money(t.get("amountbonus")),
            terminal_id=terminal_id,
            # `terminal` is the 8-digit code; a copy of the UUID there names nothing new.
            terminal_code=None if _same(terminal, terminal_id) else terminal,
            decline_category=codes.decline_category(reason_code),
            card_id=opt_str(t.get("cardid")),
        )
    elif code == "100":
        raise GatewayUnavailableError("ePay status: 100 without a transaction", operation="status")
    return StatusResult(code, str(fields.get("resultmessage") or "")[:200], parsed)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().lower() == b.strip().lower()


@dataclass(frozen=True)
class SavedCard:
    """One card of `GET /cards/{accountId}` (PascalCase keys: `ID`, `CardMask`, ...)."""

    card_id: str = field(repr=False)
    card_mask: str | None
    payer_name: str | None = field(default=None, repr=False)
    payment_available: bool = False
    transaction_id: str | None = None
    reference: str | None = None


def saved_cards_result(data: Any) -> list[SavedCard]:
    """The card list: a JSON array of cards; `{code: 1373}` (no record) is an empty list."""
    if isinstance(data, dict):
        code = opt_int(lower_keys(data).get("code"))
        if code == NO_SUCH_RECORD:
            return []
        raise GatewayUnavailableError(f"ePay cards: answer with code {code}", operation="cards")
    cards = []
    for item in data if isinstance(data, list) else []:
        card = lower_keys(item) if isinstance(item, dict) else {}
        card_id = opt_str(card.get("id"))
        if card_id is None:
            continue
        available = card.get("paymentavailable")
        cards.append(
            SavedCard(
                card_id=card_id,
                card_mask=opt_str(card.get("cardmask")),
                payer_name=opt_str(card.get("payername")),
                payment_available=available is True or str(available).lower() == "true",
                transaction_id=opt_str(card.get("transactionid")),
                reference=opt_str(card.get("reference")),
            )
        )
    return cards
