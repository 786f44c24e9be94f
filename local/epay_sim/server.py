"""The ePay simulator: a loopback HTTP server (stdlib only) that plays Halyk ePay.

See the package docstring (``local/epay_sim/__init__.py``) for the card table, error codes,
faults and control endpoints. This module never imports the project's ``payments`` layer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import ipaddress
import json
import re
import secrets
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from .cards import (
    CARDS,
    DECLINE_MESSAGES,
    NO_SUCH_CARD_CODE,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    TEST_TERMINAL_ID,
)
from .models import (
    DEFAULT_FAULT_DELAY,
    FAULTS,
    OPS,
    Fault,
    JournalEntry,
    LedgerEntry,
    PostLinkDelivery,
    TokenGrant,
)

# Error codes of the simulator for requests ePay refuses before any card is touched
# (HTTP 400 {"code": <int>, "message": "..."}). They are not issuer decline codes (4xx range).
ERR_REQUEST = 1  # malformed body or field (invoiceId, amount, description, paymentType, cardId...)
ERR_TOKEN_BINDING = 2  # invoiceId/amount/currency/terminalId differ from what the token is bound to
ERR_INVOICE_USED = 3  # the invoice (or its last 6 digits) already has a transaction
OPERATION_FAILED = 100  # charge/cancel/refund/deactivate refused (ePay's {"code": 100})

DEFAULT_SCOPE = "webapi usermanagement email_send verification statement statistics payment"
KZ_TZ = timezone(timedelta(hours=5))
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

_INVOICE_RE = re.compile(r"^[0-9]{6,15}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z .'\-]*$")
_PHONE_RE = re.compile(r"^[0-9]{7,15}$")
_CENT = Decimal("0.01")
_MIN_REFUND = Decimal(10)


@dataclass
class Request:
    """A parsed HTTP request handed to the simulator's operations."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] | None
    json: Any | None
    op: str
    params: dict[str, str]
    method_allowed: bool = True


@dataclass
class Response:
    """What an operation answers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _ThreeDS:
    """A 3-D Secure step waiting for the customer and confirmPayment."""

    md: str
    pa_req: str
    invoice_id: str
    access_token: str
    back_link: str
    failure_back_link: str


@dataclass
class _Links:
    """Notification targets and echo values remembered per invoice."""

    post_link: str
    failure_post_link: str
    secret_hash: str


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, default=_json_default, ensure_ascii=False).encode("utf-8")


def _json(status: int, obj: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status, _dumps(obj), "application/json; charset=utf-8", dict(headers or {}))


def _error(code: int, message: str, status: int = 400) -> Response:
    return _json(status, {"code": code, "message": message})


def _op_failed(reason: str) -> Response:
    # ePay answers an empty message; the reason travels in a header for humans debugging tests.
    return _json(400, {"code": OPERATION_FAILED, "message": ""}, {"X-Epay-Sim-Reason": reason})


def _unauthorized(description: str) -> Response:
    return _json(
        401,
        {"error": "invalid_token", "error_description": description},
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _is_money(value: Decimal) -> bool:
    return value.is_finite() and value > 0 and value == value.quantize(_CENT)


def _decimal_from(value: object) -> Decimal | None:
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


def _parse_multipart(body: bytes, content_type: str) -> dict[str, str] | None:
    head = b"Content-Type: " + content_type.encode("latin-1", errors="replace") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    out: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        charset = part.get_content_charset() or "utf-8"
        out[name] = payload.decode(charset, errors="replace") if isinstance(payload, bytes) else ""
    return out


def parse_body(content_type: str, body: bytes) -> tuple[dict[str, str] | None, Any | None]:
    """(form, json) parsed from a body according to its Content-Type; None where not applicable."""
    ctype = content_type.lower()
    form: dict[str, str] | None = None
    parsed: Any | None = None
    if "application/x-www-form-urlencoded" in ctype:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8", errors="replace"), keep_blank_values=True
        )
        form = {}
        for key, value in pairs:
            form.setdefault(key, value)
    elif "multipart/form-data" in ctype:
        form = _parse_multipart(body, content_type)
    elif "json" in ctype and body.strip():
        try:
            parsed = json.loads(body.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
    return form, parsed


_ROUTES: list[tuple[frozenset[str], re.Pattern[str], str]] = [
    (frozenset({"POST"}), re.compile(r"^/oauth2/token/?$"), "token"),
    (frozenset({"POST"}), re.compile(r"^/payments/cards/auth/?$"), "auth"),
    (frozenset({"POST"}), re.compile(r"^/payments/cards/confirmPayment/?$"), "confirm"),
    (
        frozenset({"GET"}),
        re.compile(r"^/check-status/payment/transaction/(?P<invoice>[^/]+)/?$"),
        "status",
    ),
    (frozenset({"POST"}), re.compile(r"^/operation/(?P<id>[^/]+)/charge/?$"), "charge"),
    (frozenset({"POST"}), re.compile(r"^/operation/(?P<id>[^/]+)/cancel/?$"), "cancel"),
    (frozenset({"POST"}), re.compile(r"^/operation/(?P<id>[^/]+)/refund/?$"), "refund"),
    (frozenset({"GET"}), re.compile(r"^/cards/(?P<account>[^/]+)/?$"), "cards"),
    (frozenset({"POST"}), re.compile(r"^/card/deactivate/(?P<card>[^/]+)/?$"), "deactivate"),
    (frozenset({"GET", "POST"}), re.compile(r"^/acs/?$"), "acs"),
]


def classify(method: str, path: str) -> tuple[str, dict[str, str], bool]:
    """(op, path parameters, whether the method is allowed) for a request path."""
    for methods, pattern, op in _ROUTES:
        match = pattern.match(path)
        if match:
            params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            return op, params, method in methods
    return "other", {}, True


def _is_loopback_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _add_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


class EpaySimulator:
    """A faithful loopback ePay: token, auth, 3DS (ACS + confirmPayment), status, operations.

    Thread-safe; every request is journaled and every money movement is kept in ``ledger``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        *,
        client_id: str = TEST_CLIENT_ID,
        client_secret: str = TEST_CLIENT_SECRET,
        terminal_id: str = TEST_TERMINAL_ID,
        expires_in: int = 1200,
        expires_in_as_string: bool = False,
        single_stage: bool = False,
        three_ds_final_status: str | None = None,
        confirm_response: str = "redirect",
        reason_code_as_string: bool = False,
        unique_last6: bool = True,
        default_scope: str = DEFAULT_SCOPE,
        postlink_delay: float = 0.0,
        postlink_duplicates: int = 0,
        postlink_drop: bool = False,
    ) -> None:
        if not _is_loopback_url(f"http://{host}/"):
            raise ValueError(f"the simulator only listens on loopback, not {host!r}")
        if three_ds_final_status not in (None, "AUTH", "CHARGE"):
            raise ValueError("three_ds_final_status must be None, 'AUTH' or 'CHARGE'")
        if confirm_response not in ("redirect", "json"):
            raise ValueError("confirm_response must be 'redirect' or 'json'")
        self.host = host
        self.port = port
        self.clock = clock
        self.client_id = client_id
        self.client_secret = client_secret
        self.terminal_id = terminal_id
        self.expires_in = expires_in
        self.expires_in_as_string = expires_in_as_string
        self.single_stage = single_stage
        self._three_ds_final_status = three_ds_final_status
        self.confirm_response = confirm_response
        self.reason_code_as_string = reason_code_as_string
        self.unique_last6 = unique_last6
        self.default_scope = default_scope
        self.postlink_delay = postlink_delay
        self.postlink_duplicates = postlink_duplicates
        self.postlink_drop = postlink_drop

        self.journal: list[JournalEntry] = []
        self.ledger: dict[str, LedgerEntry] = {}
        self.postlinks: list[PostLinkDelivery] = []
        self._lock = threading.RLock()
        self._postlink_sent = threading.Condition(self._lock)
        self._faults: list[Fault] = []
        self._tokens: dict[str, TokenGrant] = {}
        self._three_ds: dict[str, _ThreeDS] = {}
        self._links: dict[str, _Links] = {}
        self._deactivated: set[str] = set()
        self._clock_offset = 0.0
        self._pares_key = secrets.token_bytes(32)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EpaySimulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"epay-sim:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release held connections and close every open socket."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> EpaySimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def oauth_url(self) -> str:
        return f"{self.base_url}/oauth2/token"

    @property
    def api_url(self) -> str:
        return self.base_url

    @property
    def acs_url(self) -> str:
        return f"{self.base_url}/acs"

    @property
    def three_ds_final_status(self) -> str:
        if self._three_ds_final_status is not None:
            return self._three_ds_final_status
        return "CHARGE" if self.single_stage else "AUTH"

    @three_ds_final_status.setter
    def three_ds_final_status(self, value: str | None) -> None:
        if value not in (None, "AUTH", "CHARGE"):
            raise ValueError("three_ds_final_status must be None, 'AUTH' or 'CHARGE'")
        self._three_ds_final_status = value

    # ------------------------------------------------------------------ test controls

    def now(self) -> float:
        """The simulator's time: the injected clock plus any ``advance_clock`` offset."""
        return self.clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move the simulator's time forward (tokens expire by it)."""
        with self._lock:
            self._clock_offset += seconds

    def inject(self, op: str, fault: str, count: int = 1, delay: float | None = None) -> None:
        """Arm ``fault`` for the next ``count`` requests of ``op``.

        ``delay`` defaults to 30 s for ``timeout_after_commit``, 2 s for ``slow``, else 0.
        """
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        if count < 1:
            raise ValueError("count must be at least 1")
        wait = DEFAULT_FAULT_DELAY.get(fault, 0.0) if delay is None else float(delay)
        with self._lock:
            self._faults.append(Fault(op, fault, count, wait))

    def faults(self) -> list[Fault]:
        """Faults still armed."""
        with self._lock:
            return [Fault(f.op, f.fault, f.remaining, f.delay) for f in self._faults]

    def reset(self) -> None:
        """Forget journal, ledger, faults, tokens, 3DS steps, deactivations and postLinks."""
        with self._lock:
            self.journal.clear()
            self.ledger.clear()
            self.postlinks.clear()
            self._faults.clear()
            self._tokens.clear()
            self._three_ds.clear()
            self._links.clear()
            self._deactivated.clear()

    def requests(self, op: str) -> list[JournalEntry]:
        """Journal entries of one op, in order."""
        with self._lock:
            return [entry for entry in self.journal if entry.op == op]

    def wait_for_postlinks(self, count: int, timeout: float = 5.0) -> list[PostLinkDelivery]:
        """Wait until ``count`` postLink deliveries are recorded (or timeout); return them all."""
        with self._postlink_sent:
            self._postlink_sent.wait_for(lambda: len(self.postlinks) >= count, timeout=timeout)
            return list(self.postlinks)

    def entry_by_transaction(self, transaction_id: str) -> LedgerEntry | None:
        """The ledger entry with this ePay transaction id."""
        with self._lock:
            for entry in self.ledger.values():
                if entry.transaction_id == transaction_id:
                    return entry
        return None

    def _take_fault(self, op: str) -> Fault | None:
        with self._lock:
            for armed in self._faults:
                if armed.op == op:
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._faults.remove(armed)
                    return armed
        return None

    def _record(self, req: Request) -> JournalEntry:
        entry = JournalEntry(
            method=req.method,
            path=req.path,
            query=dict(req.query),
            headers=dict(req.headers),
            raw_body=req.body,
            form=dict(req.form) if req.form is not None else None,
            json=req.json,
            op=req.op,
            at=self.now(),
        )
        with self._lock:
            self.journal.append(entry)
        return entry

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, req: Request) -> Response:
        """Answer one ePay request (no faults applied here)."""
        if not req.method_allowed:
            return _json(405, {"code": ERR_REQUEST, "message": "method not allowed"})
        handlers: dict[str, Callable[[Request], Response]] = {
            "token": self._op_token,
            "auth": self._op_auth,
            "status": self._op_status,
            "charge": self._op_charge,
            "cancel": self._op_cancel,
            "refund": self._op_refund,
            "cards": self._op_cards,
            "deactivate": self._op_deactivate,
            "confirm": self._op_confirm,
            "acs": self._op_acs,
        }
        handler = handlers.get(req.op)
        if handler is None:
            if req.method == "GET" and req.path.rstrip("/") == "/3ds/result":
                return self._result_page(req)
            return _json(404, {"code": 404, "message": "not found"})
        return handler(req)

    # ------------------------------------------------------------------ token

    def _op_token(self, req: Request) -> Response:
        def bad(error: str, description: str) -> Response:
            return _json(400, {"error": error, "error_description": description})

        form = req.form
        if form is None:
            return bad("invalid_request", "form body (urlencoded or multipart) required")
        grant_type = form.get("grant_type")
        if not grant_type:
            return bad("invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            return bad("unsupported_grant_type", f"grant_type {grant_type!r} not supported")
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret", "")
        if not client_id or not client_secret:
            return bad("invalid_request", "client_id and client_secret are required")
        if not (
            hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return _json(401, {"error": "invalid_client"})
        terminal = form.get("terminal") or None
        if terminal is not None and terminal != self.terminal_id:
            return bad("invalid_request", "unknown terminal")

        invoice_id = form.get("invoiceID") or None
        amount: Decimal | None = None
        currency: str | None = None
        if invoice_id is not None:
            missing = [k for k in ("amount", "currency", "terminal") if not form.get(k)]
            if missing:
                return bad("invalid_request", f"missing {', '.join(missing)}")
            if not _INVOICE_RE.match(invoice_id):
                return bad("invalid_request", "invoiceID must be 6-15 digits")
            amount = _decimal_from(form["amount"])
            if amount is None or not _is_money(amount):
                return bad("invalid_request", "invalid amount")
            currency = form["currency"]
            if not _CURRENCY_RE.match(currency):
                return bad("invalid_request", "invalid currency")

        grant = TokenGrant(
            access_token=secrets.token_urlsafe(24),
            refresh_token=secrets.token_urlsafe(24),
            scope=form.get("scope") or self.default_scope,
            client_id=client_id,
            terminal=terminal,
            expires_at=self.now() + self.expires_in,
            invoice_id=invoice_id,
            amount=amount,
            currency=currency,
            post_link=form.get("postLink", ""),
            failure_post_link=form.get("failurePostLink", ""),
            secret_hash=form.get("secret_hash", ""),
        )
        with self._lock:
            self._tokens[grant.access_token] = grant
        expires: int | str = str(self.expires_in) if self.expires_in_as_string else self.expires_in
        return _json(
            200,
            {
                "access_token": grant.access_token,
                "expires_in": expires,
                "refresh_token": grant.refresh_token,
                "scope": grant.scope,
                "token_type": "Bearer",
            },
        )

    def _grant(self, token: str | None) -> TokenGrant | None:
        if not token:
            return None
        with self._lock:
            grant = self._tokens.get(token)
        if grant is None or self.now() >= grant.expires_at:
            return None
        return grant

    def _bearer(self, req: Request) -> TokenGrant | None:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self._grant(token.strip())

    # ------------------------------------------------------------------ auth

    def _validate_auth(self, body: dict[str, Any], grant: TokenGrant) -> Response | None:
        def bad(message: str) -> Response:
            return _error(ERR_REQUEST, message)

        invoice_id = body.get("invoiceId")
        if not isinstance(invoice_id, str) or not _INVOICE_RE.match(invoice_id):
            return bad("invoiceId must be a string of 6-15 digits")
        alt = body.get("invoiceIdAlt")
        if alt not in (None, "") and (not isinstance(alt, str) or not _INVOICE_RE.match(alt)):
            return bad("invoiceIdAlt must be a string of 6-15 digits")
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
            return bad("amount must be a number")
        if not _is_money(Decimal(amount)):
            return bad("amount must be positive with at most 2 decimals")
        currency = body.get("currency")
        if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
            return bad("currency must be an ISO 4217 letter code")
        terminal_id = body.get("terminalId")
        if not isinstance(terminal_id, str) or not terminal_id:
            return bad("terminalId is required")
        description = body.get("description", "")
        if not isinstance(description, str):
            return bad("description must be a string")
        if len(description.encode("utf-8")) > 125:
            return bad("description is longer than 125 bytes")
        if body.get("paymentType") != "cardId":
            return bad("paymentType must be 'cardId'")
        card = body.get("cardId")
        if not isinstance(card, dict) or not isinstance(card.get("id"), str) or not card["id"]:
            return bad('cardId must be an object {"id": "<card id>"}')
        account = body.get("accountId", "")
        if not isinstance(account, str):
            return bad("accountId must be a string")
        name = body.get("name")
        if name not in (None, "") and (not isinstance(name, str) or not _NAME_RE.match(name)):
            return bad("name must be Latin letters")
        phone = body.get("phone")
        if phone not in (None, "") and (not isinstance(phone, str) or not _PHONE_RE.match(phone)):
            return bad("phone must be digits")
        email = body.get("email")
        if email not in (None, "") and (not isinstance(email, str) or "@" not in email):
            return bad("invalid email")
        language = body.get("language")
        if language not in (None, "", "rus", "kaz", "eng"):
            return bad("language must be rus, kaz or eng")
        recurrent = body.get("recurrent")
        if recurrent is not None and not isinstance(recurrent, bool):
            return bad("recurrent must be a boolean")
        for link in ("backLink", "failureBackLink", "postLink", "failurePostLink"):
            if not isinstance(body.get(link, ""), str):
                return bad(f"{link} must be a string")

        def mismatch(message: str) -> Response:
            return _error(ERR_TOKEN_BINDING, message)

        if grant.invoice_id is None:
            return mismatch("the token is not bound to an invoice (request it with invoiceID)")
        if invoice_id != grant.invoice_id:
            return mismatch("invoiceId differs from the token's invoiceID")
        if grant.amount is None or Decimal(amount) != grant.amount:
            return mismatch("amount differs from the token's amount")
        if currency != grant.currency:
            return mismatch("currency differs from the token's currency")
        if terminal_id != grant.terminal:
            return mismatch("terminalId differs from the token's terminal")
        return None

    def _op_auth(self, req: Request) -> Response:
        grant = self._bearer(req)
        if grant is None:
            return _unauthorized("missing, unknown or expired access token")
        if "application/json" not in req.headers.get("content-type", "").lower():
            return _error(ERR_REQUEST, "Content-Type must be application/json")
        body = req.json
        if not isinstance(body, dict):
            return _error(ERR_REQUEST, "body must be a JSON object")
        problem = self._validate_auth(body, grant)
        if problem is not None:
            return problem

        invoice_id: str = body["invoiceId"]
        card_id: str = body["cardId"]["id"]
        now = self.now()
        notify: LedgerEntry | None = None
        with self._lock:
            existing = self.ledger.get(invoice_id)
            if existing is not None:
                existing.auth_count += 1
                existing.history.append(f"auth #{existing.auth_count} refused: invoice reused")
                return _error(ERR_INVOICE_USED, "invoiceId already used")
            if self.unique_last6:
                tail = invoice_id[-6:]
                for other in self.ledger.values():
                    if other.invoice_id[-6:] == tail:
                        return _error(
                            ERR_INVOICE_USED,
                            f"the last 6 digits of invoiceId clash with invoice {other.invoice_id}",
                        )
            profile = CARDS.get(card_id)
            deactivated = card_id in self._deactivated
            entry = LedgerEntry(
                invoice_id=invoice_id,
                transaction_id=str(uuid.uuid4()),
                status_name="NEW",
                amount=Decimal(body["amount"]),
                currency=body["currency"],
                terminal=body["terminalId"],
                card_id=card_id,
                account_id=body.get("accountId", ""),
                card_mask=profile.mask if profile and not deactivated else "",
                invoice_id_alt=body.get("invoiceIdAlt") or "",
                description=body.get("description", ""),
                language=body.get("language") or "",
                name=body.get("name") or "",
                email=body.get("email") or "",
                phone=body.get("phone") or "",
                recurrent=bool(body.get("recurrent", False)),
                created_at=now,
            )
            self.ledger[invoice_id] = entry
            self._links[invoice_id] = _Links(
                post_link=body.get("postLink") or grant.post_link,
                failure_post_link=body.get("failurePostLink") or grant.failure_post_link,
                secret_hash=grant.secret_hash,
            )
            if profile is None or deactivated:
                self._reject(entry, NO_SUCH_CARD_CODE, DECLINE_MESSAGES[NO_SUCH_CARD_CODE])
                notify = entry
                response = _error(entry.reason_code, entry.reason)
            elif profile.outcome == "REJECT":
                self._reject(entry, profile.code, profile.message)
                notify = entry
                response = _error(entry.reason_code, entry.reason)
            elif profile.outcome == "3D":
                entry.status_name = "3D"
                entry.secure = True
                entry.history.append("auth: 3-D Secure required")
                md = secrets.token_hex(16)
                pa_req = base64.b64encode(secrets.token_bytes(96)).decode("ascii")
                self._three_ds[md] = _ThreeDS(
                    md=md,
                    pa_req=pa_req,
                    invoice_id=invoice_id,
                    access_token=grant.access_token,
                    back_link=body.get("backLink", ""),
                    failure_back_link=body.get("failureBackLink", ""),
                )
                response = _json(
                    200,
                    {
                        "id": entry.transaction_id,
                        "invoiceID": invoice_id,
                        "accountID": entry.account_id,
                        "amount": entry.amount,
                        "currency": entry.currency,
                        "status": "3D",
                        "code": 0,
                        "reason": "",
                        "cardID": card_id,
                        "secure3D": {"paReq": pa_req, "md": md, "action": self.acs_url},
                    },
                )
            else:
                final = "CHARGE" if profile.outcome == "CHARGE" or self.single_stage else "AUTH"
                self._approve(entry, final, "auth")
                notify = entry
                response = _json(200, self._auth_body(entry))
        if notify is not None:
            self._notify(notify)
        return response

    def _approve(self, entry: LedgerEntry, final: str, source: str) -> None:
        entry.status_name = final
        entry.reference = f"{secrets.randbelow(9 * 10**11) + 10**11}"
        entry.int_reference = secrets.token_hex(8).upper()
        entry.approval_code = f"{secrets.randbelow(10**6):06d}"
        entry.reason_code = 0
        entry.reason = ""
        if final == "CHARGE":
            entry.captured_amount = entry.amount
        entry.history.append(f"{source}: {final} {entry.amount} {entry.currency}")

    def _reject(self, entry: LedgerEntry, code: int, message: str) -> None:
        entry.status_name = "REJECT"
        entry.reason_code = code
        entry.reason = message
        entry.history.append(f"auth: REJECT {code} {message}")

    def _auth_body(self, entry: LedgerEntry) -> dict[str, Any]:
        return {
            "id": entry.transaction_id,
            "invoiceID": entry.invoice_id,
            "accountID": entry.account_id,
            "amount": entry.amount,
            "currency": entry.currency,
            "status": entry.status_name,
            "code": 0,
            "reason": "",
            "reference": entry.reference,
            "intReference": entry.int_reference,
            "approvalCode": entry.approval_code,
            "cardID": entry.card_id,
            "cardMask": entry.card_mask,
            "secure3D": None,
        }

    # ------------------------------------------------------------------ status

    def _op_status(self, req: Request) -> Response:
        grant = self._bearer(req)
        if grant is None:
            return _unauthorized("missing, unknown or expired access token")
        if grant.terminal is None:
            return _json(200, {"resultCode": "104", "resultMessage": "No terminal in the token"})
        invoice_id = req.params["invoice"]
        with self._lock:
            entry = self.ledger.get(invoice_id)
            if entry is None:
                return _json(200, {"resultCode": "102", "resultMessage": "No such transaction"})
            if entry.terminal != grant.terminal:
                return _json(200, {"resultCode": "106", "resultMessage": "Wrong terminal"})
            transaction = {
                "id": entry.transaction_id,
                "createdDate": datetime.fromtimestamp(entry.created_at, tz=KZ_TZ).isoformat(
                    timespec="seconds"
                ),
                "invoiceID": entry.invoice_id,
                "invoiceIdAlt": entry.invoice_id_alt,
                "amount": entry.amount,
                "currency": entry.currency,
                "terminalID": entry.terminal,
                "accountID": entry.account_id,
                "description": entry.description,
                "language": entry.language,
                "cardMask": entry.card_mask,
                "cardType": "VISA" if entry.card_mask.startswith("4") else "",
                "issuer": "HALYK BANK" if entry.card_mask else "",
                "reference": entry.reference,
                "approvalCode": entry.approval_code,
                "secure": "Yes" if entry.secure else "No",
                "reason": entry.reason or ("success" if entry.reason_code == 0 else ""),
                "reasonCode": self._reason_code(entry.reason_code),
                "statusName": entry.status_name,
                "name": entry.name,
                "email": entry.email,
                "phone": entry.phone,
                "cardID": entry.card_id,
            }
        return _json(
            200, {"resultCode": "100", "resultMessage": "Success", "transaction": transaction}
        )

    def _reason_code(self, code: int) -> int | str:
        return str(code) if self.reason_code_as_string else code

    # ------------------------------------------------------------------ operations

    def _operation_entry(self, req: Request) -> tuple[LedgerEntry | None, Response | None]:
        grant = self._bearer(req)
        if grant is None:
            return None, _unauthorized("missing, unknown or expired access token")
        entry = self.entry_by_transaction(req.params["id"])
        if entry is None:
            return None, _op_failed("unknown transaction id")
        if grant.terminal is None or grant.terminal != entry.terminal:
            return None, _op_failed("the token's terminal does not own this transaction")
        return entry, None

    @staticmethod
    def _operation_arg(req: Request, name: str) -> object:
        if name in req.query:
            return req.query[name]
        if isinstance(req.json, dict):
            return req.json.get(name)
        if req.form is not None:
            return req.form.get(name)
        return None

    def _operation_amount(self, req: Request) -> tuple[Decimal | None, Response | None]:
        raw = self._operation_arg(req, "amount")
        if raw in (None, ""):
            return None, None
        amount = _decimal_from(raw)
        if amount is None or not _is_money(amount):
            return None, _op_failed("invalid amount")
        return amount, None

    def _op_charge(self, req: Request) -> Response:
        entry, problem = self._operation_entry(req)
        if entry is None:
            return problem or _op_failed("unknown transaction")
        amount, problem = self._operation_amount(req)
        if problem is not None:
            return problem
        with self._lock:
            if entry.status_name != "AUTH":
                return _op_failed(f"charge needs AUTH, transaction is {entry.status_name}")
            capture = entry.amount if amount is None else amount
            if capture > entry.amount:
                return _op_failed("amount exceeds the held amount")
            entry.status_name = "CHARGE"
            entry.captured_amount = capture
            entry.history.append(f"charge: CHARGE {capture} of {entry.amount}")
        return _json(200, {})

    def _op_cancel(self, req: Request) -> Response:
        entry, problem = self._operation_entry(req)
        if entry is None:
            return problem or _op_failed("unknown transaction")
        with self._lock:
            if entry.status_name != "AUTH":
                return _op_failed(f"cancel needs AUTH, transaction is {entry.status_name}")
            entry.status_name = "CANCEL"
            entry.history.append("cancel: CANCEL")
        return _json(200, {})

    def _op_refund(self, req: Request) -> Response:
        entry, problem = self._operation_entry(req)
        if entry is None:
            return problem or _op_failed("unknown transaction")
        amount, problem = self._operation_amount(req)
        if problem is not None:
            return problem
        external = self._operation_arg(req, "externalID")
        external_id = str(external) if external not in (None, "") else ""
        with self._lock:
            if entry.status_name != "CHARGE":
                return _op_failed(f"refund needs CHARGE, transaction is {entry.status_name}")
            if external_id and external_id in entry.refund_external_ids:
                return _op_failed(f"externalID {external_id} already refunded")
            remaining = entry.captured_amount - entry.refunded_amount
            refund = remaining if amount is None else amount
            if refund < _MIN_REFUND:
                return _op_failed(f"refund below the minimum of {_MIN_REFUND}")
            if refund > remaining:
                return _op_failed("refund exceeds the charged amount not yet refunded")
            entry.refunded_amount += refund
            if external_id:
                entry.refund_external_ids.append(external_id)
            if entry.refunded_amount == entry.captured_amount:
                entry.status_name = "REFUND"
            entry.history.append(
                f"refund: {refund} (total {entry.refunded_amount}) -> {entry.status_name}"
                + (f" externalID={external_id}" if external_id else "")
            )
        return _json(200, {})

    def _op_cards(self, req: Request) -> Response:
        grant = self._bearer(req)
        if grant is None:
            return _unauthorized("missing, unknown or expired access token")
        account_id = req.params["account"]
        created = datetime.fromtimestamp(self.now(), tz=KZ_TZ).isoformat(timespec="seconds")
        with self._lock:
            cards = [
                {
                    "ID": card_id,
                    "AccountID": account_id,
                    "MerchantID": grant.client_id,
                    "Terminal": grant.terminal or self.terminal_id,
                    "CardHash": hashlib.sha256(card_id.encode()).hexdigest()[:32].upper(),
                    "CardMask": profile.mask,
                    "PayerName": profile.payer_name,
                    "Reference": "",
                    "IntReference": "",
                    "Token": "",
                    "CreatedDate": created,
                    "PaymentAvailable": profile.payment_available,
                }
                for card_id, profile in CARDS.items()
                if profile.listed and card_id not in self._deactivated
            ]
        return _json(200, cards)

    def _op_deactivate(self, req: Request) -> Response:
        grant = self._bearer(req)
        if grant is None:
            return _unauthorized("missing, unknown or expired access token")
        card_id = req.params["card"]
        with self._lock:
            profile = CARDS.get(card_id)
            if profile is None or not profile.listed or card_id in self._deactivated:
                return _op_failed("no such card")
            self._deactivated.add(card_id)
        return _json(200, {})

    # ------------------------------------------------------------------ 3-D Secure

    def _make_pares(self, md: str, approve: bool) -> str:
        payload = json.dumps(
            {"md": md, "result": "Y" if approve else "N", "nonce": secrets.token_hex(8)},
            separators=(",", ":"),
        ).encode()
        sig = hmac.new(self._pares_key, payload, hashlib.sha256).digest()
        inner = base64.urlsafe_b64encode(payload) + b"." + base64.urlsafe_b64encode(sig)
        return base64.b64encode(inner).decode("ascii")

    def _read_pares(self, pa_res: str, md: str) -> bool | None:
        """True (approved), False (failed) or None (forged, malformed or for another MD)."""
        try:
            inner = base64.b64decode(pa_res.encode("ascii"), validate=True)
            payload_b64, _, sig_b64 = inner.partition(b".")
            payload = base64.urlsafe_b64decode(payload_b64)
            sig = base64.urlsafe_b64decode(sig_b64)
        except (ValueError, UnicodeEncodeError):
            return None
        expected = hmac.new(self._pares_key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(sig, expected):
            return None
        data = json.loads(payload)
        if data.get("md") != md:
            return None
        return bool(data.get("result") == "Y")

    def _op_acs(self, req: Request) -> Response:
        params = dict(req.query)
        if req.form:
            params.update(req.form)
        pa_req, md, term_url = params.get("PaReq", ""), params.get("MD", ""), params.get("TermUrl")
        with self._lock:
            step = self._three_ds.get(md)
            entry = self.ledger.get(step.invoice_id) if step else None
        if step is None or entry is None or not hmac.compare_digest(pa_req, step.pa_req):
            return _page(400, "3-D Secure error", "<p>Unknown or invalid PaReq/MD.</p>")
        if not term_url or not _is_http_url(term_url):
            return _page(400, "3-D Secure error", "<p>TermUrl must be an http(s) URL.</p>")
        if entry.status_name != "3D":
            return _page(400, "3-D Secure", "<p>This authentication is already complete.</p>")
        approve, fail = self._make_pares(md, True), self._make_pares(md, False)
        action = html.escape(term_url, quote=True)
        md_attr = html.escape(md, quote=True)

        def form(form_id: str, pa_res: str, label: str) -> str:
            return (
                f'<form id="{form_id}-form" method="post" action="{action}">'
                f'<input type="hidden" name="PaRes" value="{html.escape(pa_res, quote=True)}">'
                f'<input type="hidden" name="MD" value="{md_attr}">'
                f'<button type="submit" id="{form_id}">{label}</button></form>'
            )

        amount = html.escape(f"{entry.amount} {entry.currency}")
        body = (
            f'<p>Merchant payment of <b id="amount">{amount}</b> with card '
            f"{html.escape(entry.card_mask)}.</p><p>Confirm this payment?</p>"
            + form("approve", approve, "Approve")
            + form("fail", fail, "Fail")
        )
        return _page(200, "Simulated issuer 3-D Secure (ACS)", body)

    def _op_confirm(self, req: Request) -> Response:
        token = req.query.get("Access", "")
        grant = self._grant(token)
        if grant is None:
            return _unauthorized("missing, unknown or expired Access token")
        form = req.form or {}
        pa_res, md = form.get("PaRes", ""), form.get("MD", "")
        notify: LedgerEntry | None = None
        with self._lock:
            step = self._three_ds.get(md)
            if step is None:
                return _error(ERR_REQUEST, "unknown MD")
            if not hmac.compare_digest(token, step.access_token):
                return _error(ERR_TOKEN_BINDING, "Access token was not issued for this invoice")
            approved = self._read_pares(pa_res, md)
            if approved is None:
                return _error(ERR_REQUEST, "invalid PaRes")
            entry = self.ledger[step.invoice_id]
            if entry.status_name == "3D":
                if approved:
                    self._approve(entry, self.three_ds_final_status, "confirmPayment")
                else:
                    self._reject(entry, 455, DECLINE_MESSAGES[455])
                    entry.history[-1] = f"confirmPayment: REJECT 455 {DECLINE_MESSAGES[455]}"
                notify = entry
            else:
                entry.history.append(f"confirmPayment repeated: stays {entry.status_name}")
            success = entry.status_name in ("AUTH", "CHARGE", "CANCEL", "REFUND")
            reference, code, reason = entry.reference, entry.reason_code, entry.reason
            body = self._auth_body(entry) if success else None
            back = step.back_link if success else (step.failure_back_link or step.back_link)
        if notify is not None:
            self._notify(notify)
        if self.confirm_response == "json":
            if body is not None:
                return _json(200, body)
            return _error(code, reason)
        location = back or f"{self.base_url}/3ds/result"
        if success:
            location = _add_query(location, reference=reference)
        else:
            location = _add_query(location, errorCode=str(code))
        return Response(302, b"", "text/html; charset=utf-8", {"Location": location})

    def _result_page(self, req: Request) -> Response:
        rows = "".join(
            f'<li>{html.escape(k)}: <span id="{html.escape(k, quote=True)}">'
            f"{html.escape(v)}</span></li>"
            for k, v in req.query.items()
        )
        return _page(200, "Payment result", f"<ul>{rows}</ul>")

    # ------------------------------------------------------------------ postLink

    def _notify(self, entry: LedgerEntry) -> None:
        with self._lock:
            links = self._links.get(entry.invoice_id)
            if links is None or self.postlink_drop:
                return
            success = entry.status_name in ("AUTH", "CHARGE")
            url = links.post_link if success else (links.failure_post_link or links.post_link)
            if not url:
                return
            payload = {
                "id": entry.transaction_id,
                "dateTime": datetime.fromtimestamp(self.now(), tz=KZ_TZ).isoformat(
                    timespec="seconds"
                ),
                "invoiceId": entry.invoice_id,
                "invoiceIdAlt": entry.invoice_id_alt,
                "amount": _json_default(entry.amount),
                "currency": entry.currency,
                "terminal": entry.terminal,
                "accountId": entry.account_id,
                "description": entry.description,
                "language": entry.language,
                "name": entry.name,
                "email": entry.email,
                "phone": entry.phone,
                "cardMask": entry.card_mask,
                "cardType": "VISA" if entry.card_mask.startswith("4") else "",
                "cardId": entry.card_id,
                "issuer": "HALYK BANK" if entry.card_mask else "",
                "reference": entry.reference,
                "approvalCode": entry.approval_code,
                "secure": "yes" if entry.secure else "no",
                "secureDetails": "",
                "code": "ok" if success else "error",
                "reason": entry.reason,
                "reasonCode": self._reason_code(entry.reason_code),
                "secret_hash": links.secret_hash,
                "ip": "127.0.0.1",
                "ipCountry": "KZ",
                "ipCity": "ALMATY",
                "ipRegion": "",
                "ipDistrict": "",
                "ipLatitude": 43.25,
                "ipLongitude": 76.95,
            }
            if not _is_loopback_url(url):
                self.postlinks.append(
                    PostLinkDelivery(url, payload, error="not sent: host is not loopback")
                )
                return
            copies = 1 + max(0, self.postlink_duplicates)
            delay = self.postlink_delay
        threading.Thread(
            target=self._deliver,
            args=(url, payload, copies, delay),
            name="epay-sim-postlink",
            daemon=True,
        ).start()

    def _deliver(self, url: str, payload: dict[str, Any], copies: int, delay: float) -> None:
        if delay > 0 and self._stopping.wait(delay):
            return
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data = json.dumps(payload).encode("utf-8")
        for _ in range(copies):
            if self._stopping.is_set():
                return
            delivery = PostLinkDelivery(url, payload, at=self.now())
            request = urllib.request.Request(
                url, data=data, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with opener.open(request, timeout=5) as answer:
                    delivery.status = answer.status
            except urllib.error.HTTPError as exc:
                delivery.status = exc.code
            except (urllib.error.URLError, OSError) as exc:
                delivery.error = str(exc)
            with self._lock:
                self.postlinks.append(delivery)
                self._postlink_sent.notify_all()

    # ------------------------------------------------------------------ control (/_sim/*)

    def control(self, method: str, path: str, body: bytes) -> Response:
        """Out-of-process test controls; never journaled."""
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _json(400, {"error": "body must be JSON"})
        if not isinstance(data, dict):
            return _json(400, {"error": "body must be a JSON object"})
        route = (method, path.rstrip("/"))
        with self._lock:
            if route == ("GET", "/_sim/journal"):
                return _json(200, [entry.to_dict() for entry in self.journal])
            if route == ("GET", "/_sim/ledger"):
                return _json(200, {k: v.to_dict() for k, v in self.ledger.items()})
            if route == ("GET", "/_sim/postlinks"):
                return _json(200, [d.to_dict() for d in self.postlinks])
            if route == ("GET", "/_sim/faults"):
                return _json(200, [vars(f) for f in self._faults])
        if route == ("POST", "/_sim/faults"):
            try:
                delay = data.get("delay")
                self.inject(
                    str(data.get("op")),
                    str(data.get("fault")),
                    int(data.get("count", 1)),
                    None if delay is None else float(delay),
                )
            except (TypeError, ValueError) as exc:
                return _json(400, {"error": str(exc)})
            return _json(200, {"ok": True})
        if route == ("POST", "/_sim/reset"):
            self.reset()
            return _json(200, {"ok": True})
        if route == ("POST", "/_sim/clock"):
            seconds = _decimal_from(data.get("advance", 0))
            if seconds is None:
                return _json(400, {"error": "advance must be a number of seconds"})
            self.advance_clock(float(seconds))
            return _json(200, {"now": self.now()})
        if route == ("POST", "/_sim/config"):
            return self._configure(data)
        return _json(404, {"error": "unknown control endpoint"})

    _SETTABLE: ClassVar[dict[str, type]] = {
        "postlink_delay": float,
        "postlink_duplicates": int,
        "postlink_drop": bool,
        "single_stage": bool,
        "expires_in": int,
        "expires_in_as_string": bool,
        "reason_code_as_string": bool,
        "unique_last6": bool,
    }

    def _configure(self, data: dict[str, Any]) -> Response:
        unknown = sorted(set(data) - set(self._SETTABLE) - {"three_ds_final_status"})
        if unknown:
            return _json(400, {"error": f"not settable: {', '.join(unknown)}"})
        try:
            if "three_ds_final_status" in data:
                self.three_ds_final_status = data["three_ds_final_status"]
            for key, kind in self._SETTABLE.items():
                if key in data:
                    setattr(self, key, kind(data[key]))
        except (TypeError, ValueError) as exc:
            return _json(400, {"error": str(exc)})
        return _json(200, {"ok": True})


def _is_http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _page(status: int, title: str, body_html: str) -> Response:
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return Response(status, page.encode("utf-8"), "text/html; charset=utf-8")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: EpaySimulator) -> None:
        self.sim = sim
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "epay-sim/1.0"
    timeout = 120  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # headers and body go out without a delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002
        return  # quiet: the journal is the log

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        sim = self.server.sim
        split = urllib.parse.urlsplit(self.path)
        path = split.path or "/"
        query: dict[str, str] = {}
        for key, value in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(key, value)
        body = self._read_body()
        if path.startswith("/_sim/"):
            self._send(sim.control(self.command, path, body))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        form, parsed = parse_body(headers.get("content-type", ""), body)
        op, params, allowed = classify(self.command, path)
        req = Request(self.command, path, query, headers, body, form, parsed, op, params, allowed)
        entry = sim._record(req)
        fault = sim._take_fault(op)
        kind = fault.fault if fault else None
        delay = fault.delay if fault else 0.0
        entry.fault = kind
        if kind == "down":
            entry.status = 0
            self._drop()
            return
        if kind == "500_before_commit":
            self._send(_json(500, {"message": "Internal error"}), entry)
            return
        if kind == "in_progress":  # the status API's "ask later" (resultCode 107)
            self._send(_json(200, {"resultCode": "107", "resultMessage": "In progress"}), entry)
            return
        if kind == "slow":
            sim._stopping.wait(delay)
        try:
            response = sim.dispatch(req)
        except Exception:  # a simulator bug must still answer, like a real 500
            traceback.print_exc(file=sys.stderr)
            response = _json(500, {"message": "Internal error"})
        if kind == "timeout_after_commit":
            entry.status = 0
            sim._stopping.wait(delay)
            self._drop()
            return
        if kind == "500_after_commit":
            response = _json(500, {"message": "Internal error"})
        elif kind == "broken_body":
            cut = response.body[: len(response.body) // 2] if len(response.body) > 2 else b""
            response = Response(200, cut or b'{"status": "', "application/json; charset=utf-8")
        self._send(response, entry)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, response: Response, entry: JournalEntry | None = None) -> None:
        if entry is not None:
            entry.status = response.status
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)
