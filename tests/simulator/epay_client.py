"""A minimal ePay client over urllib3, as a merchant would call the simulator, and a test clock."""

from __future__ import annotations

import html
import itertools
import json
import re
import time
import urllib.parse
from typing import Any

import urllib3

from local.epay_sim import (
    DEFAULT_SCOPE,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    TEST_TERMINAL_ID,
    EpaySimulator,
)

_invoices = itertools.count(100001)


class FakeClock:
    """A clock the test moves by hand; the simulator reads it for token expiry."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def new_invoice() -> str:
    """An invoice id not used before in this test session."""
    return str(next(_invoices))


def request_token(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    fields: dict[str, str | None] | None = None,
    *,
    multipart: bool = False,
) -> urllib3.BaseHTTPResponse:
    """POST the token form of the sandbox merchant; ``fields`` override it (None drops a field)."""
    merged: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "scope": DEFAULT_SCOPE,
        "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET,
        "terminal": TEST_TERMINAL_ID,
    }
    merged.update(fields or {})
    form = {k: v for k, v in merged.items() if v is not None}
    return http.request("POST", sim.oauth_url, fields=form, encode_multipart=multipart)


def invoice_token(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    invoice: str,
    amount: str = "100",
    currency: str = "KZT",
    **extra: str,
) -> str:
    """A token bound to an invoice, amount and currency."""
    fields: dict[str, str | None] = {"invoiceID": invoice, "amount": amount, "currency": currency}
    resp = request_token(http, sim, fields | dict(extra))
    assert resp.status == 200, resp.data
    token: str = resp.json()["access_token"]
    return token


def terminal_token(
    http: urllib3.PoolManager, sim: EpaySimulator, terminal: str = TEST_TERMINAL_ID
) -> str:
    """A token for operations on existing transactions (terminal, no invoice)."""
    resp = request_token(http, sim, {"terminal": terminal})
    assert resp.status == 200, resp.data
    token: str = resp.json()["access_token"]
    return token


def auth_body(invoice: str, card: str, amount: Any = 100, **overrides: Any) -> dict[str, Any]:
    """A valid ``/payments/cards/auth`` body for ``card``; ``overrides`` replace fields."""
    body: dict[str, Any] = {
        "amount": amount,
        "currency": "KZT",
        "terminalId": TEST_TERMINAL_ID,
        "invoiceId": invoice,
        "description": "Subscription",
        "accountId": "customer-1",
        "name": "JOHN DOE",
        "email": "john@example.com",
        "phone": "77001234567",
        "backLink": "http://127.0.0.1:9/back",
        "failureBackLink": "http://127.0.0.1:9/fail",
        "postLink": "",
        "failurePostLink": "",
        "language": "rus",
        "paymentType": "cardId",
        "recurrent": True,
        "cardId": {"id": card},
    }
    body.update(overrides)
    return body


def post_auth(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    token: str,
    body: dict[str, Any] | str,
    **kwargs: Any,
) -> urllib3.BaseHTTPResponse:
    """POST an auth body (a dict, or raw JSON text) with the bearer token."""
    raw = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return http.request(
        "POST",
        f"{sim.api_url}/payments/cards/auth",
        body=raw.encode("utf-8"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        **kwargs,
    )


def pay(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    card: str,
    amount: float = 100,
    *,
    terminal: str = TEST_TERMINAL_ID,
    invoice: str | None = None,
) -> tuple[str, urllib3.BaseHTTPResponse]:
    """Token and auth on ``terminal`` for ``invoice`` (default: a new one): (invoice, answer)."""
    invoice = invoice or new_invoice()
    token = invoice_token(http, sim, invoice, amount=str(amount), terminal=terminal)
    body = auth_body(invoice, card, amount, terminalId=terminal)
    return invoice, post_auth(http, sim, token, body)


def status(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    invoice: str,
    *,
    terminal: str = TEST_TERMINAL_ID,
) -> dict[str, Any]:
    """The status API's answer for an invoice, asked with a token of ``terminal`` (HTTP 200)."""
    resp = http.request(
        "GET",
        f"{sim.api_url}/check-status/payment/transaction/{invoice}",
        headers={"Authorization": f"Bearer {terminal_token(http, sim, terminal)}"},
    )
    assert resp.status == 200
    result: dict[str, Any] = resp.json()
    return result


def operation(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    tx_id: str,
    name: str,
    *,
    terminal: str = TEST_TERMINAL_ID,
    timeout: urllib3.Timeout | None = None,
    **query: str,
) -> urllib3.BaseHTTPResponse:
    """POST ``/operation/{tx_id}/{name}`` (charge, cancel, refund) with ``query`` arguments,
    with a token of ``terminal``."""
    url = f"{sim.api_url}/operation/{tx_id}/{name}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"Authorization": f"Bearer {terminal_token(http, sim, terminal)}"}
    if timeout is None:
        return http.request("POST", url, headers=headers)
    return http.request("POST", url, headers=headers, timeout=timeout)


def acs_form(page: str, button: str) -> tuple[str, dict[str, str]]:
    """(action, fields) of the ACS page's form behind ``button`` (approve or fail)."""
    form = re.search(rf'<form id="{button}-form" method="post" action="([^"]+)">(.*?)</form>', page)
    assert form, page
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2)))
    return html.unescape(form.group(1)), {k: html.unescape(v) for k, v in fields.items()}
