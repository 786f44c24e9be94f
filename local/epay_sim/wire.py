"""What goes over the wire: parsed requests, answers in ePay's shapes, routing, URL checks."""

from __future__ import annotations

import html
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email import policy
from email.parser import BytesParser
from typing import Any

# Error codes of the simulator for requests ePay refuses before any card is touched
# (HTTP 400 {"code": <int>, "message": "..."}). They are not issuer decline codes (4xx range).
ERR_REQUEST = 1  # malformed body or field (invoiceId, amount, description, paymentType, cardId...)
ERR_TOKEN_BINDING = 2  # invoiceId/amount/currency/terminalId differ from what the token is bound to
ERR_INVOICE_USED = 3  # the invoice (or its last 6 digits) already has a transaction
OPERATION_FAILED = 100  # charge/cancel/refund/deactivate refused (ePay's {"code": 100})

KZ_TZ = timezone(timedelta(hours=5))
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class Request:
    """A parsed HTTP request handed to the simulator's areas."""

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
    """What an area answers."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- answers


def json_default(value: object) -> object:
    """Decimals as JSON numbers: integral ones as ints, others as floats (as ePay sends them)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_response(status: int, obj: object, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (UTF-8, Decimals as numbers)."""
    body = json.dumps(obj, default=json_default, ensure_ascii=False).encode("utf-8")
    return Response(status, body, "application/json; charset=utf-8", dict(headers or {}))


def error(code: int, message: str, status: int = 400) -> Response:
    """ePay's refusal: ``{"code", "message"}``."""
    return json_response(status, {"code": code, "message": message})


def op_failed(reason: str) -> Response:
    """ePay's refusal of an operation: ``{"code": 100, "message": ""}``."""
    # ePay answers an empty message; the reason travels in a header for humans debugging tests.
    return json_response(
        400, {"code": OPERATION_FAILED, "message": ""}, {"X-Epay-Sim-Reason": reason}
    )


def unauthorized(description: str = "missing, unknown or expired access token") -> Response:
    """401 for a missing, unknown or expired bearer token."""
    return json_response(
        401,
        {"error": "invalid_token", "error_description": description},
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def internal_error() -> Response:
    """ePay's 500."""
    return json_response(500, {"message": "Internal error"})


def page(status: int, title: str, body_html: str) -> Response:
    """A minimal HTML page; ``body_html`` must already be escaped."""
    # The empty icon keeps browsers from asking for /favicon.ico (a journaled 404).
    text = (
        '<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return Response(status, text.encode("utf-8"), "text/html; charset=utf-8")


def kz_time(timestamp: float, timespec: str = "seconds") -> str:
    """An ISO time in Kazakhstan's zone (UTC+5), to the second (records) or finer (postLink's
    ``dateTime`` carries fractional seconds)."""
    return datetime.fromtimestamp(timestamp, tz=KZ_TZ).isoformat(timespec=timespec)


# ---------------------------------------------------------------- requests


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


def first_values(query: str) -> dict[str, str]:
    """A urlencoded string as a dict, keeping the first value of a repeated key."""
    out: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        out.setdefault(key, value)
    return out


def parse_body(content_type: str, body: bytes) -> tuple[dict[str, str] | None, Any | None]:
    """(form, json) parsed from a body according to its Content-Type; None where not applicable."""
    ctype = content_type.lower()
    form: dict[str, str] | None = None
    parsed: Any | None = None
    if "application/x-www-form-urlencoded" in ctype:
        form = first_values(body.decode("utf-8", errors="replace"))
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
    (frozenset({"GET"}), re.compile(r"^/payform/payment-api\.js$"), "widget"),
    (frozenset({"POST"}), re.compile(r"^/payform/?$"), "payform"),
    (frozenset({"POST"}), re.compile(r"^/payform/pay/?$"), "payform_pay"),
    (frozenset({"POST"}), re.compile(r"^/payform/3ds/?$"), "payform_3ds"),
]


def classify(method: str, path: str) -> tuple[str, dict[str, str], bool]:
    """(op, path parameters, whether the method is allowed) for a request path."""
    for methods, pattern, op in _ROUTES:
        match = pattern.match(path)
        if match:
            params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            return op, params, method in methods
    return "other", {}, True


def build_request(
    method: str, path: str, query: str, headers: Iterable[tuple[str, str]], body: bytes
) -> Request:
    """A ``Request`` from the raw parts of an HTTP request (header names lower-cased)."""
    lowered = {k.lower(): v for k, v in headers}
    form, parsed = parse_body(lowered.get("content-type", ""), body)
    op, params, allowed = classify(method, path)
    return Request(
        method, path, first_values(query), lowered, body, form, parsed, op, params, allowed
    )


# ---------------------------------------------------------------- URLs


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` is http(s) to a loopback host (the only hosts the simulator talks to)."""
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


def add_query(url: str, **params: str) -> str:
    """``url`` with ``params`` appended to its query."""
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))
