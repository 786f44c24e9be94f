"""A browser-less customer of the simulator's payment page, for tests without a browser.

``submit_payment`` does over HTTP what ``payment-api.js`` and a customer do: POST the payment
object as a form to the payment page, type a card number, press a button (and, for ``3ds``, the
issuer's button), and returns where the browser would go back to (the final 303's
``Location``, not followed). urllib only; no proxies; no redirects followed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

from .cards import DEFAULT_CARD_NUMBER


class PayformError(Exception):
    """The payment page answered something a customer could not go on from."""

    def __init__(self, status: int, body: str, step: str) -> None:
        super().__init__(f"{step}: HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body
        self.step = step


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002
        return None  # the 3xx surfaces as an HTTPError, read by _post


class _Form:
    """One ``<form>`` of a page: its action, its fields and its submit buttons by id."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, tuple[str, str]] = {}


class _Forms(HTMLParser):
    """The forms of an HTML page, by id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: dict[str, _Form] = {}
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = _Form(attr.get("action", ""))
            self.forms[attr.get("id", "")] = self._current
        elif self._current is not None and tag == "input" and attr.get("name"):
            self._current.fields[attr["name"]] = attr.get("value", "")
        elif self._current is not None and tag == "button" and attr.get("id"):
            self._current.buttons[attr["id"]] = (attr.get("name", ""), attr.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def form_fields(payment_object: Mapping[str, object]) -> dict[str, str]:
    """The payment object as ``halyk.pay`` posts it: objects as JSON, booleans "true"/"false",
    None left out."""
    fields: dict[str, str] = {}
    for name, value in payment_object.items():
        if value is None:
            continue
        if isinstance(value, bool):
            fields[name] = "true" if value else "false"
        elif isinstance(value, Mapping | list):
            fields[name] = json.dumps(value, default=str)
        elif isinstance(value, Decimal):
            fields[name] = format(value, "f")
        else:
            fields[name] = str(value)
    return fields


def _post(url: str, fields: Mapping[str, str], timeout: float) -> tuple[int, str, str]:
    """POST a urlencoded form without following redirects: (status, body, Location)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())
    data = urllib.parse.urlencode(fields).encode("utf-8")
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with opener.open(request, timeout=timeout) as answer:
            body = answer.read().decode("utf-8", errors="replace")
            return answer.status, body, answer.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", errors="replace")
        return exc.code, body, exc.headers.get("Location", "")


def _press(page: str, base_url: str, form_id: str, button: str) -> tuple[str, dict[str, str]]:
    """(action URL, fields) of pressing ``button`` of ``form_id`` on ``page``."""
    parser = _Forms()
    parser.feed(page)
    form = parser.forms.get(form_id)
    if form is None or button not in form.buttons:
        raise PayformError(200, page, f"no button #{button} in form #{form_id}")
    name, value = form.buttons[button]
    fields = dict(form.fields)
    if name:
        fields[name] = value
    return urllib.parse.urljoin(base_url, form.action), fields


def _location(status: int, body: str, location: str, step: str) -> str:
    if status != 303 or not location:
        raise PayformError(status, body, step)
    return location


def submit_payment(
    payform_url: str,
    payment_object: Mapping[str, object],
    outcome: str = "approve",
    card_number: str = DEFAULT_CARD_NUMBER,
    timeout: float = 5.0,
    *,
    issuer: str = "approve",
) -> str:
    """Pay on the payment page at ``payform_url`` (``EpaySimulator.payform_url``) with
    ``outcome`` (approve | decline | 3ds; for 3ds the issuer's button is ``issuer``: approve |
    fail); returns the final redirect's ``Location``. Raises ``PayformError`` otherwise."""
    status, body, _ = _post(payform_url, form_fields(payment_object), timeout)
    if status != 200:
        raise PayformError(status, body, "payment page")
    buttons = {"approve": "approve", "decline": "decline", "3ds": "three-ds"}
    if outcome not in buttons:
        raise ValueError(f"outcome must be one of {sorted(buttons)}")
    action, fields = _press(body, payform_url, "payform", buttons[outcome])
    fields["cardNumber"] = card_number
    status, body, location = _post(action, fields, timeout)
    if outcome != "3ds":
        return _location(status, body, location, "pay")
    if status != 200:
        raise PayformError(status, body, "pay (3ds)")
    action, fields = _press(body, action, "acs-form", f"acs-{issuer}")
    status, body, location = _post(action, fields, timeout)
    return _location(status, body, location, "issuer")
