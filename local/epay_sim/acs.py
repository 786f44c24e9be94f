"""3-D Secure: the issuer's page (ACS), its signed PaRes, confirmPayment and the result page."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
from dataclasses import dataclass
from typing import Any

from .card_payments import approve, auth_body, reject
from .cards import DECLINE_MESSAGES
from .models import LedgerEntry, ThreeDSStep
from .oauth import OAuth
from .postlinks import PostLinks
from .state import SimState
from .wire import (
    ERR_REQUEST,
    ERR_TOKEN_BINDING,
    Request,
    Response,
    add_query,
    error,
    is_http_url,
    json_response,
    page,
    unauthorized,
)

THREE_DS_FAILED = 455
# Statuses after which confirmPayment reports success (a repeated confirm of a later-captured,
# cancelled or refunded charge still reports how the 3DS step ended).
_CONFIRMED = ("AUTH", "CHARGE", "CANCEL", "REFUND")


class PaResSigner:
    """Makes and checks PaRes values: the issuer's signed verdict on one MD."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def make(self, md: str, approve: bool) -> str:
        """A PaRes approving (or failing) the step ``md``."""
        payload = json.dumps(
            {"md": md, "result": "Y" if approve else "N", "nonce": secrets.token_hex(8)},
            separators=(",", ":"),
        ).encode()
        sig = hmac.new(self._key, payload, hashlib.sha256).digest()
        inner = base64.urlsafe_b64encode(payload) + b"." + base64.urlsafe_b64encode(sig)
        return base64.b64encode(inner).decode("ascii")

    def read(self, pa_res: str, md: str) -> bool | None:
        """True (approved), False (failed) or None (forged, malformed or for another MD)."""
        try:
            inner = base64.b64decode(pa_res.encode("ascii"), validate=True)
            payload_b64, _, sig_b64 = inner.partition(b".")
            payload = base64.urlsafe_b64decode(payload_b64)
            sig = base64.urlsafe_b64decode(sig_b64)
        except (ValueError, UnicodeEncodeError):
            return None
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(sig, expected):
            return None
        data = json.loads(payload)
        if data.get("md") != md:
            return None
        return bool(data.get("result") == "Y")


@dataclass(frozen=True)
class _Confirmed:
    """How a confirmPayment ended, read under the lock."""

    success: bool
    reference: str
    code: int
    reason: str
    body: dict[str, Any] | None
    back_link: str

    @classmethod
    def of(cls, entry: LedgerEntry, step: ThreeDSStep) -> _Confirmed:
        success = entry.status_name in _CONFIRMED
        return cls(
            success=success,
            reference=entry.reference,
            code=entry.reason_code,
            reason=entry.reason,
            body=auth_body(entry) if success else None,
            back_link=step.back_link if success else (step.failure_back_link or step.back_link),
        )


def _acs_form(form_id: str, action: str, md: str, pa_res: str, label: str) -> str:
    """One button of the ACS page: POSTs PaRes and MD to the merchant's TermUrl."""
    return (
        f'<form id="{form_id}-form" method="post" action="{html.escape(action, quote=True)}">'
        f'<input type="hidden" name="PaRes" value="{html.escape(pa_res, quote=True)}">'
        f'<input type="hidden" name="MD" value="{html.escape(md, quote=True)}">'
        f'<button type="submit" id="{form_id}">{label}</button></form>'
    )


class ThreeDSecure:
    """The issuer's 3DS page and ePay's confirmPayment, which settles a ``3D`` transaction."""

    def __init__(self, state: SimState, oauth: OAuth, postlinks: PostLinks) -> None:
        self._state = state
        self._oauth = oauth
        self._postlinks = postlinks
        self._pares = PaResSigner()

    def acs(self, req: Request) -> Response:
        """``GET|POST /acs`` with PaReq, MD, TermUrl: a page with Approve and Fail buttons."""
        params = dict(req.query)
        if req.form:
            params.update(req.form)
        pa_req, md, term_url = params.get("PaReq", ""), params.get("MD", ""), params.get("TermUrl")
        with self._state.lock:
            step = self._state.three_ds.get(md)
            entry = self._state.entry_by_transaction(step.transaction_id) if step else None
        if step is None or entry is None or not hmac.compare_digest(pa_req, step.pa_req):
            return page(400, "3-D Secure error", "<p>Unknown or invalid PaReq/MD.</p>")
        if not term_url or not is_http_url(term_url):
            return page(400, "3-D Secure error", "<p>TermUrl must be an http(s) URL.</p>")
        if entry.status_name != "3D":
            return page(400, "3-D Secure", "<p>This authentication is already complete.</p>")
        amount = html.escape(f"{entry.amount} {entry.currency}")
        body = (
            f'<p>Merchant payment of <b id="amount">{amount}</b> with card '
            f"{html.escape(entry.card_mask)}.</p><p>Confirm this payment?</p>"
            + _acs_form("approve", term_url, md, self._pares.make(md, True), "Approve")
            + _acs_form("fail", term_url, md, self._pares.make(md, False), "Fail")
        )
        return page(200, "Simulated issuer 3-D Secure (ACS)", body)

    def confirm(self, req: Request) -> Response:
        """``POST /payments/cards/confirmPayment?Access=<the auth's token>`` with PaRes and MD."""
        token = req.query.get("Access", "")
        if self._oauth.grant(token) is None:
            return unauthorized("missing, unknown or expired Access token")
        form = req.form or {}
        pa_res, md = form.get("PaRes", ""), form.get("MD", "")
        with self._state.lock:
            step = self._state.three_ds.get(md)
            if step is None:
                return error(ERR_REQUEST, "unknown MD")
            if not hmac.compare_digest(token, step.access_token):
                return error(ERR_TOKEN_BINDING, "Access token was not issued for this invoice")
            approved = self._pares.read(pa_res, md)
            if approved is None:
                return error(ERR_REQUEST, "invalid PaRes")
            entry = self._state.entry_by_transaction(step.transaction_id)
            if entry is None:  # its ledger was reset while the customer was at the ACS
                return error(ERR_REQUEST, "unknown MD")
            settled = self._settle(entry, approved)
            confirmed = _Confirmed.of(entry, step)
        if settled:
            self._postlinks.notify(entry)
        return self._answer(confirmed)

    def result_page(self, req: Request) -> Response:
        """``GET /3ds/result``: where the confirm redirect lands when the auth had no backLink."""
        rows = "".join(
            f'<li>{html.escape(k)}: <span id="{html.escape(k, quote=True)}">'
            f"{html.escape(v)}</span></li>"
            for k, v in req.query.items()
        )
        return page(200, "Payment result", f"<ul>{rows}</ul>")

    def _settle(self, entry: LedgerEntry, approved: bool) -> bool:
        """End a waiting 3DS step; False when it had already ended (a repeated confirm)."""
        if entry.status_name != "3D":
            entry.history.append(f"confirmPayment repeated: stays {entry.status_name}")
            return False
        if approved:
            final = self._state.settings.final_three_ds_status(entry.terminal)
            approve(entry, final, "confirmPayment")
        else:
            message = DECLINE_MESSAGES[THREE_DS_FAILED]
            reject(entry, THREE_DS_FAILED, message, source="confirmPayment")
        return True

    def _answer(self, confirmed: _Confirmed) -> Response:
        """A redirect carrying ``reference`` or ``errorCode``, or JSON when so configured."""
        if self._state.settings.confirm_response == "json":
            if confirmed.body is not None:
                return json_response(200, confirmed.body)
            return error(confirmed.code, confirmed.reason)
        location = confirmed.back_link or f"{self._state.base_url}/3ds/result"
        if confirmed.success:
            location = add_query(location, reference=confirmed.reference)
        else:
            location = add_query(location, errorCode=str(confirmed.code))
        return Response(302, b"", "text/html; charset=utf-8", {"Location": location})
