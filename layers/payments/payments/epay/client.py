"""The ePay client: urllib3, explicit timeouts, bounded retries only where nothing doubles."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from urllib3.exceptions import HTTPError

from payments.charges.payment_gateway import (
    AuthRequest,
    AuthResult,
    ConfirmResult,
    InvoiceTokenRequest,
    StatusResult,
    Token,
)
from payments.charges.terminals import Purpose, Terminal, resolve
from payments.epay.responses import (
    NO_SUCH_RECORD,
    SavedCard,
    auth_result,
    interpret_confirm,
    opt_int,
    read,
    saved_cards_result,
    status_result,
)
from payments.errors import (
    GatewayRejectedError,
    GatewayUnavailableError,
)
from payments.shared import jsonutil
from payments.shared.deadline import Deadline
from payments.shared.money import money_str

TOKEN_EXPIRY_MARGIN = timedelta(seconds=60)
MIN_CALL_SECONDS = 0.5
DEFAULT_TOKEN_LIFETIME = 300
# The fields of a token answer kept for the payment page (`auth`, epay-api.md section 9).
TOKEN_FIELDS = ("access_token", "expires_in", "refresh_token", "scope", "token_type")
DEFAULT_CONFIRM_PATH = "/payments/cards/confirmPayment"


@dataclass(frozen=True)
class EpayCredentials:
    """The merchant's ePay credentials, as kept in Secrets Manager: one client, its terminals
    (the first is the default)."""

    client_id: str
    client_secret: str
    terminals: tuple[Terminal, ...]

    def __repr__(self) -> str:
        names = [t.id for t in self.terminals]
        return f"EpayCredentials(client_id={self.client_id!r}, terminals={names!r})"

    @classmethod
    def single(cls, client_id: str, client_secret: str, terminal_id: str) -> EpayCredentials:
        """Credentials with one terminal serving every purpose (the secret's older shape)."""
        return cls(client_id, client_secret, (Terminal(terminal_id, frozenset(Purpose)),))


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


# Told of each HTTP call to ePay: (operation, elapsed milliseconds, HTTP status or None). Wired
# by bootstrap to a metric (EpayLatency); this package stays free of Powertools.
type CallObserver = Callable[[str, float, int | None], None]


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
        on_call: CallObserver | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        """`on_call(operation, elapsed_ms, http_status)` hears of every HTTP call to ePay once it
        ended (status None: no answer, e.g. a timeout); `timer` is the clock that times them."""
        self._on_call = on_call
        self._timer = timer
        self._oauth_url = oauth_url
        self._confirm_path = confirm_path
        self._api_url = api_url.rstrip("/")
        self._credentials = credentials
        self._scope = scope
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        self._http = http or urllib3.PoolManager(maxsize=10, retries=False)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._terminal_tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    # --- the port ------------------------------------------------------------------------

    def terminals(self) -> tuple[Terminal, ...]:
        """The terminals of the credentials (the first is the default)."""
        return self._credentials().terminals

    def _terminal_named(self, terminal_id: str) -> str:
        """A charge's terminal (empty: the credentials' first)."""
        return resolve(terminal_id, self.terminals())

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
        terminal = self._terminal_named(request.terminal_id)
        return self._with_retries(lambda: self._request_token(terminal, fields, deadline), deadline)

    def authorize(self, token: Token, request: AuthRequest, deadline: Deadline) -> AuthResult:
        """POST /payments/cards/auth once. Never retried: ePay has no idempotency key."""
        body: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency,
            "terminalId": self._terminal_named(request.terminal_id),
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
            **request.payer.fields(),
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
        return auth_result(data)

    def status(self, invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        """GET the status of a terminal's invoice; retried on transient failures (it changes
        nothing)."""
        url = f"{self._api_url}/check-status/payment/transaction/{quote(invoice_id, safe='')}"

        def once() -> StatusResult:
            token = self._terminal(terminal_id, deadline)
            return status_result(self._call("status", "GET", url, token, deadline))

        return self._with_retries(once, deadline)

    def saved_cards(
        self, account_id: str, deadline: Deadline, terminal_id: str = ""
    ) -> list[SavedCard]:
        """GET the cards saved under an account (none: ePay's "no record", code 1373); retried
        on transient failures (it changes nothing). For the saved-cards use cases to come."""
        url = f"{self._api_url}/cards/{quote(account_id, safe='')}"

        def once() -> list[SavedCard]:
            token = self._terminal(terminal_id, deadline)
            try:
                return saved_cards_result(self._send("cards", "GET", url, token, deadline))
            except GatewayRejectedError as exc:
                if exc.gateway_code == NO_SUCH_RECORD:
                    return []
                raise

        return self._with_retries(once, deadline)

    def capture(
        self, transaction_id: str, terminal_id: str, amount: Decimal | None, deadline: Deadline
    ) -> None:
        """Charge a held AUTH of a terminal (whole, or `amount` of it). Not retried: a resend
        could double."""
        body = jsonutil.dumps({"amount": amount}).encode() if amount is not None else b""
        self._operation("capture", "charge", transaction_id, terminal_id, deadline, body=body)

    def refund(
        self,
        transaction_id: str,
        terminal_id: str,
        amount: Decimal,
        external_id: str,
        deadline: Deadline,
    ) -> None:
        """Refund `amount` of a taken transaction, naming our refund (`externalID`). Never
        retried: ePay has no idempotency key, a resend could return the money twice."""
        query = urlencode({"amount": money_str(amount), "externalID": external_id})
        self._operation("refund", f"refund?{query}", transaction_id, terminal_id, deadline)

    def cancel(self, transaction_id: str, terminal_id: str, deadline: Deadline) -> None:
        """Release (void) a held AUTH. Not retried here: the caller decides (a cancel moves no
        money, so its reconciler may send it again)."""
        self._operation("cancel", "cancel", transaction_id, terminal_id, deadline)

    def deactivate_card(self, card_id: str, terminal_id: str, deadline: Deadline) -> None:
        """POST `{api}/card/deactivate/{cardId}` once (epay-api.md section 5). A refusal means
        ePay has no such active card (GatewayRejectedError)."""
        self._call(
            "deactivate",
            "POST",
            f"{self._api_url}/card/deactivate/{quote(card_id, safe='')}",
            self._terminal(terminal_id, deadline),
            deadline,
            body=b"",
            content_type="application/json",
        )

    def _operation(
        self,
        operation: str,
        path: str,
        transaction_id: str,
        terminal_id: str,
        deadline: Deadline,
        *,
        body: bytes = b"",
    ) -> None:
        """POST `{api}/operation/{id}/<path>` once with the terminal's token (epay-api.md 5)."""
        self._call(
            operation,
            "POST",
            f"{self._api_url}/operation/{quote(transaction_id, safe='')}/{path}",
            self._terminal(terminal_id, deadline),
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
        started = self._timer()
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
            self._observe("confirm", started, None)
            return interpret_confirm(None, None, b"", exc)
        self._observe("confirm", started, response.status)
        return interpret_confirm(response.status, response.headers.get("Location"), response.data)

    # --- plumbing ------------------------------------------------------------------------

    def _terminal(self, terminal_id: str, deadline: Deadline) -> Token:
        """A terminal's token for operations on its transactions, cached per terminal until
        shortly before expiry."""
        terminal = self._terminal_named(terminal_id)
        with self._lock:
            cached = self._terminal_tokens.get(terminal)
        if cached is not None and cached.expires_at - TOKEN_EXPIRY_MARGIN > self._clock():
            return cached
        token = self._with_retries(lambda: self._request_token(terminal, {}, deadline), deadline)
        with self._lock:
            self._terminal_tokens[terminal] = token
        return token

    def _request_token(self, terminal: str, extra: dict[str, str], deadline: Deadline) -> Token:
        creds = self._credentials()
        form = {
            "grant_type": "client_credentials",
            "scope": self._scope,
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "terminal": terminal,
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
        lifetime = opt_int(data.get("expires_in")) or DEFAULT_TOKEN_LIFETIME
        raw = {k: data[k] for k in TOKEN_FIELDS if k in data}
        return Token(access, self._clock() + timedelta(seconds=lifetime), raw)

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
        """`_send`, for answers that are JSON objects (anything else reads as `{}`)."""
        answer = self._send(
            operation, method, url, token, deadline, body=body, content_type=content_type
        )
        return answer if isinstance(answer, dict) else {}

    def _send(
        self,
        operation: str,
        method: str,
        url: str,
        token: Token | None,
        deadline: Deadline,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> Any:
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
        started = self._timer()
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
            self._observe(operation, started, None)
            return read(operation, None, b"", exc)
        self._observe(operation, started, response.status)
        return read(operation, response.status, response.data)

    def _observe(self, operation: str, started: float, http_status: int | None) -> None:
        """Tell `on_call` how long one HTTP call took (before its answer is read)."""
        if self._on_call is not None:
            self._on_call(operation, (self._timer() - started) * 1000, http_status)
