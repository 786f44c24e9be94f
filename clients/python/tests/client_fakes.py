"""A scripted transport that records every request (a stub server without sockets)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from epay_payments_client import ApiConnectionError, HttpResponse

CHARGE_ID = "ch_3f1c2a9e8b7d4c6a5e4f3a2b1c0d9e8f"


@dataclass(frozen=True)
class Sent:
    """One request the client sent."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    timeout: float

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def json(self) -> Any:
        """The body, decoded."""
        assert self.body is not None
        return json.loads(self.body)


def answer(status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> HttpResponse:
    """A scripted answer (a dict body is sent as JSON text, a str or bytes as they are)."""
    if isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = b"" if body is None else json.dumps(body).encode()
    return HttpResponse(status, {k.lower(): v for k, v in (headers or {}).items()}, raw)


def error(status: int, code: str, message: str = "refused", **headers: str) -> HttpResponse:
    """An API error answer."""
    return answer(status, {"error": {"code": code, "message": message}}, headers)


@dataclass
class FakeTransport:
    """Answers from a script (an ApiConnectionError in it is raised), recording requests."""

    script: list[HttpResponse | ApiConnectionError]
    sent: list[Sent] = field(default_factory=list)

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> HttpResponse:
        """Record the request and play the next scripted answer."""
        self.sent.append(Sent(method, url, dict(headers), body, timeout))
        assert self.script, f"unexpected request {method} {url}"
        step = self.script.pop(0)
        if isinstance(step, ApiConnectionError):
            raise step
        return step


def charge_json(**changes: Any) -> dict[str, Any]:
    """A charge resource as the API answers it."""
    charge: dict[str, Any] = {
        "id": CHARGE_ID,
        "invoiceId": "000000042",
        "status": "CAPTURED",
        "amount": 1500.00,
        "capturedAmount": 1500.00,
        "refundedAmount": 0,
        "currency": "KZT",
        "accountId": "customer-42",
        "cardId": "****0001",
        "description": "Order 42",
        "capture": "auto",
        "recurrent": True,
        "createdAt": "2026-11-28T12:00:00.123Z",
        "updatedAt": "2026-11-28T12:00:00.456Z",
        "epay": {
            "transactionId": "8f2b6c7e-3a41-4d8e-9b0a-5c6d7e8f9a0b",
            "reference": "633412345678",
            "approvalCode": "A1B2C3",
            "cardMask": "440043******0178",
        },
        "nextAction": None,
        "error": None,
    }
    charge.update(changes)
    return charge
