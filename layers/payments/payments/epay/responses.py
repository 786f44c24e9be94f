"""Reading ePay's answers: HTTP outcomes to results or errors, tolerant of casing and types."""

from __future__ import annotations

from collections.abc import Mapping
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
from payments.errors import (
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
)
from payments.shared import jsonutil
from payments.shared.money import to_money

Operation = Literal["token", "auth", "status", "capture", "confirm"]
# The statuses a 200 answer of the auth endpoint may carry (epay-api.md section 2).
_AUTH_ANSWERS = frozenset({GatewayStatus.AUTH, GatewayStatus.CHARGE, GatewayStatus.THREE_DS})
# Operations that change nothing at ePay: safe to retry, and a failure means "unavailable".
SAFE_OPERATIONS: frozenset[str] = frozenset({"token", "status"})


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


def interpret(
    operation: str, status: int | None, body: bytes, error: Exception | None = None
) -> dict[str, Any]:
    """Map one HTTP outcome (or transport error) to a parsed JSON object or one of our errors.

    Safe operations (token, status) turn every ambiguity into GatewayUnavailableError (try again);
    the others (auth, capture) turn it into GatewayUnknownOutcomeError (ask the status API).
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
    if not isinstance(parsed, dict):
        parsed = {}
    if 400 <= status < 500:
        fields = lower_keys(parsed)
        raise GatewayRejectedError(
            str(fields.get("message") or fields.get("error") or f"HTTP {status}")[:200],
            operation=operation,
            gateway_code=opt_int(fields.get("code")),
            http_status=status,
        )
    if not 200 <= status < 300:
        raise ambiguous(f"ePay {operation}: HTTP {status}", operation=operation, http_status=status)
    result: dict[str, Any] = parsed
    return result


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
        if code:
            raise GatewayRejectedError(
                str(fields.get("message") or raw_status)[:200], operation="auth", gateway_code=code
            )
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
    fields = lower_keys(data)
    code = str(fields.get("resultcode") or "").strip()
    transaction = fields.get("transaction")
    parsed = None
    if code == "100" and isinstance(transaction, dict):
        t = lower_keys(transaction)
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
            reason_code=opt_int(t.get("reasoncode")),
        )
    elif code == "100":
        raise GatewayUnavailableError("ePay status: 100 without a transaction", operation="status")
    return StatusResult(code, str(fields.get("resultmessage") or "")[:200], parsed)
