"""The ePay client: urllib3, explicit timeouts, bounded retries only where nothing doubles."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError

from payments import jsonutil
from payments.errors import (
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
)
from payments.gateway import (
    AuthRequest,
    AuthResult,
    ConfirmResult,
    Deadline,
    InvoiceTokenRequest,
    Secure3D,
    StatusResult,
    Token,
    TransactionStatus,
)
from payments.models import money_str, to_money

Operation = Literal["token", "auth", "status", "capture", "confirm"]
# Operations that create nothing at ePay: an ambiguous answer means "try again", not "unknown".
SAFE_OPERATIONS: frozenset[str] = frozenset({"token", "status"})
TOKEN_EXPIRY_MARGIN = timedelta(seconds=60)
MIN_CALL_SECONDS = 0.5
DEFAULT_TOKEN_LIFETIME = 300
DEFAULT_CONFIRM_PATH = "/payments/cards/confirmPayment"


@dataclass(frozen=True)
class EpayCredentials:
    """The merchant's ePay credentials, as kept in Secrets Manager."""

    client_id: str
    client_secret: str
    terminal_id: str

    def __repr__(self) -> str:
        return f"EpayCredentials(client_id={self.client_id!r}, terminal_id={self.terminal_id!r})"


@dataclass(frozen=True)
class Timeouts:
    """Connect and read timeouts of every call; both stay below the function's own timeout."""

    connect: float = 3.0
    read: float = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded, jittered retries for safe operations; randomness and sleep are injectable."""

    max_retries: int = 2
    base_delay: float = 0.2
    max_delay: float = 2.0
    jitter: Callable[[], float] = random.random
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
        ceiling: float = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling * (0.5 + self.jitter() / 2)


def _lower_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in data.items()}


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _opt_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _opt_money(value: Any) -> Decimal | None:
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
        fields = _lower_keys(parsed)
        raise GatewayRejectedError(
            str(fields.get("message") or fields.get("error") or f"HTTP {status}")[:200],
            operation=operation,
            gateway_code=_opt_int(fields.get("code")),
            http_status=status,
        )
    if not 200 <= status < 300:
        raise ambiguous(f"ePay {operation}: HTTP {status}", operation=operation, http_status=status)
    result: dict[str, Any] = parsed
    return result


class EpayClient:
    """ePay over urllib3 (epay-api.md): tokens, auth, status and capture."""

    def __init__(
        self,
        *,
        oauth_url: str,
        api_url: str,
        credentials: Callable[[], EpayCredentials],
        scope: str,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        http: urllib3.PoolManager | None = None,
        clock: Callable[[], datetime] | None = None,
        confirm_path: str = DEFAULT_CONFIRM_PATH,
    ) -> None:
        self._oauth_url = oauth_url
        self._confirm_path = confirm_path
        self._api_url = api_url.rstrip("/")
        self._credentials = credentials
        self._scope = scope
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        self._http = http or urllib3.PoolManager(maxsize=10, retries=False)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._terminal_token: Token | None = None
        self._lock = threading.Lock()

    # --- the port ------------------------------------------------------------------------

    def terminal_id(self) -> str:
        """The terminal the credentials belong to."""
        return self._credentials().terminal_id

    def invoice_token(self, request: InvoiceTokenRequest, deadline: Deadline) -> Token:
        """Ask for a token bound to one invoice; safe to retry (a token creates nothing)."""
        fields = {
            "invoiceID": request.invoice_id,
            "amount": money_str(request.amount),
            "currency": request.currency,
            "postLink": request.post_link,
            "failurePostLink": request.failure_post_link,
            "secret_hash": request.secret_hash,
        }
        return self._with_retries(lambda: self._request_token(fields, deadline), deadline)

    def authorize(self, token: Token, request: AuthRequest, deadline: Deadline) -> AuthResult:
        """POST /payments/cards/auth once. Never retried: ePay has no idempotency key."""
        body: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency,
            "terminalId": self.terminal_id(),
            "invoiceId": request.invoice_id,
            "description": request.description,
            "accountId": request.account_id,
            "language": request.language,
            "paymentType": "cardId",
            "recurrent": request.recurrent,
            "cardId": {"id": request.card_id},
            "postLink": request.post_link,
            "failurePostLink": request.failure_post_link,
        }
        optional = {
            "invoiceIdAlt": request.invoice_id_alt,
            "name": request.name,
            "email": request.email,
            "phone": request.phone,
            "backLink": request.back_link,
            "failureBackLink": request.failure_back_link,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        data = self._call(
            "auth",
            "POST",
            f"{self._api_url}/payments/cards/auth",
            token,
            deadline,
            body=jsonutil.dumps(body).encode(),
            content_type="application/json",
        )
        return _auth_result(data)

    def status(self, invoice_id: str, deadline: Deadline) -> StatusResult:
        """GET the status of an invoice; retried on transient failures (it changes nothing)."""
        url = f"{self._api_url}/check-status/payment/transaction/{quote(invoice_id, safe='')}"

        def once() -> StatusResult:
            token = self._terminal(deadline)
            return _status_result(self._call("status", "GET", url, token, deadline))

        return self._with_retries(once, deadline)

    def capture(self, transaction_id: str, amount: Decimal | None, deadline: Deadline) -> None:
        """Charge a held AUTH (whole, or `amount` of it). Not retried: a resend could double."""
        token = self._terminal(deadline)
        body = jsonutil.dumps({"amount": amount}).encode() if amount is not None else b""
        self._call(
            "capture",
            "POST",
            f"{self._api_url}/operation/{quote(transaction_id, safe='')}/charge",
            token,
            deadline,
            body=body,
            content_type="application/json",
        )

    def confirm_3ds(
        self, access_token: str, pa_res: str, md: str, deadline: Deadline
    ) -> ConfirmResult:
        """POST PaRes/MD to ePay's confirm endpoint (`?Access=<the charge's token>`) once.

        Never retried (it settles the payment) and redirects are not followed: the outcome is the
        redirect's `reference`/`errorCode`, or a JSON body's. See `interpret_confirm`.
        """
        separator = "&" if "?" in self._confirm_path else "?"
        url = f"{self._api_url}{self._confirm_path}{separator}Access={quote(access_token, safe='')}"
        budget = deadline.remaining() - MIN_CALL_SECONDS
        if budget < MIN_CALL_SECONDS:
            raise GatewayUnavailableError(
                "ePay confirm: not enough time left to call", operation="confirm"
            )
        timeout = urllib3.Timeout(
            connect=min(self._timeouts.connect, budget), read=min(self._timeouts.read, budget)
        )
        try:
            response = self._http.request(
                "POST",
                url,
                body=urlencode({"PaRes": pa_res, "MD": md}).encode(),
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                timeout=timeout,
                retries=False,
                redirect=False,
            )
        except HTTPError as exc:
            return interpret_confirm(None, None, b"", exc)
        return interpret_confirm(response.status, response.headers.get("Location"), response.data)

    # --- plumbing ------------------------------------------------------------------------

    def _terminal(self, deadline: Deadline) -> Token:
        """A token for operations on existing transactions, cached until shortly before expiry."""
        with self._lock:
            cached = self._terminal_token
        if cached is not None and cached.expires_at - TOKEN_EXPIRY_MARGIN > self._clock():
            return cached
        token = self._with_retries(lambda: self._request_token({}, deadline), deadline)
        with self._lock:
            self._terminal_token = token
        return token

    def _request_token(self, extra: dict[str, str], deadline: Deadline) -> Token:
        creds = self._credentials()
        form = {
            "grant_type": "client_credentials",
            "scope": self._scope,
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "terminal": creds.terminal_id,
            **extra,
        }
        data = self._call(
            "token",
            "POST",
            self._oauth_url,
            None,
            deadline,
            body=urlencode(form).encode(),
            content_type="application/x-www-form-urlencoded",
        )
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise GatewayUnavailableError("ePay token: no access_token", operation="token")
        lifetime = _opt_int(data.get("expires_in")) or DEFAULT_TOKEN_LIFETIME
        return Token(access, self._clock() + timedelta(seconds=lifetime))

    def _with_retries[T](self, call: Callable[[], T], deadline: Deadline) -> T:
        attempt = 0
        while True:
            try:
                return call()
            except GatewayUnavailableError:
                attempt += 1
                if attempt > self._retry.max_retries:
                    raise
                pause = self._retry.delay(attempt)
                if deadline.remaining() - pause < MIN_CALL_SECONDS * 2:
                    raise
                self._retry.sleep(pause)

    def _call(
        self,
        operation: str,
        method: str,
        url: str,
        token: Token | None,
        deadline: Deadline,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        budget = deadline.remaining() - MIN_CALL_SECONDS
        if budget < MIN_CALL_SECONDS:
            raise GatewayUnavailableError(
                f"ePay {operation}: not enough time left to call", operation=operation
            )
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if token is not None:
            headers["Authorization"] = f"Bearer {token.access_token}"
        timeout = urllib3.Timeout(
            connect=min(self._timeouts.connect, budget), read=min(self._timeouts.read, budget)
        )
        try:
            response = self._http.request(
                method,
                url,
                body=body,
                headers=headers,
                timeout=timeout,
                retries=False,
                redirect=False,
            )
        except HTTPError as exc:
            return interpret(operation, None, b"", exc)
        return interpret(operation, response.status, response.data)


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
        query = _lower_keys(dict(parse_qsl(urlsplit(location).query, keep_blank_values=True)))
        return ConfirmResult(
            reference=_opt_str(query.get("reference")),
            error_code=_opt_str(query.get("errorcode")),
        )
    fields = _lower_keys(interpret("confirm", status, body, error))
    error_code = _opt_str(fields.get("errorcode"))
    code = _opt_int(fields.get("code"))
    state = str(fields.get("status") or "").upper()
    if error_code is None and code and state not in {"AUTH", "CHARGE"}:
        error_code = str(code)
    return ConfirmResult(reference=_opt_str(fields.get("reference")), error_code=error_code)


def _auth_result(data: dict[str, Any]) -> AuthResult:
    fields = _lower_keys(data)
    status = str(fields.get("status") or "").upper()
    secure = fields.get("secure3d")
    secure3d = None
    if isinstance(secure, dict) and status == "3D":
        s = _lower_keys(secure)
        if not (s.get("pareq") and s.get("md") and s.get("action")):
            raise GatewayUnknownOutcomeError("ePay auth: incomplete secure3D", operation="auth")
        secure3d = Secure3D(
            pa_req=str(s["pareq"]),
            md=str(s["md"]),
            action=str(s["action"]),
            term_url=_opt_str(s.get("termurl")),
        )
    if status not in {"AUTH", "CHARGE", "3D"} or (status == "3D" and secure3d is None):
        code = _opt_int(fields.get("code"))
        if code:
            raise GatewayRejectedError(
                str(fields.get("message") or status)[:200], operation="auth", gateway_code=code
            )
        raise GatewayUnknownOutcomeError(
            f"ePay auth: unexpected status {status[:20]!r}", operation="auth"
        )
    return AuthResult(
        status=status,
        transaction_id=_opt_str(fields.get("id")),
        invoice_id=_opt_str(fields.get("invoiceid")),
        reference=_opt_str(fields.get("reference")),
        approval_code=_opt_str(fields.get("approvalcode")),
        card_mask=_opt_str(fields.get("cardmask")),
        amount=_opt_money(fields.get("amount")),
        currency=_opt_str(fields.get("currency")),
        secure3d=secure3d,
    )


def _status_result(data: dict[str, Any]) -> StatusResult:
    fields = _lower_keys(data)
    code = str(fields.get("resultcode") or "").strip()
    transaction = fields.get("transaction")
    parsed = None
    if code == "100" and isinstance(transaction, dict):
        t = _lower_keys(transaction)
        parsed = TransactionStatus(
            transaction_id=_opt_str(t.get("id")),
            invoice_id=_opt_str(t.get("invoiceid")),
            status_name=str(t.get("statusname") or "").upper(),
            amount=_opt_money(t.get("amount")),
            currency=_opt_str(t.get("currency")),
            reference=_opt_str(t.get("reference")),
            approval_code=_opt_str(t.get("approvalcode")),
            card_mask=_opt_str(t.get("cardmask")),
            reason=_opt_str(t.get("reason")),
            reason_code=_opt_int(t.get("reasoncode")),
        )
    elif code == "100":
        raise GatewayUnavailableError("ePay status: 100 without a transaction", operation="status")
    return StatusResult(code, str(fields.get("resultmessage") or "")[:200], parsed)


__all__ = [
    "EpayClient",
    "EpayCredentials",
    "GatewayError",
    "RetryPolicy",
    "Timeouts",
    "interpret",
    "interpret_confirm",
]
