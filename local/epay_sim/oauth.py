"""ePay's OAuth: ``POST /oauth2/token`` issues tokens; every API call presents one as a bearer."""

from __future__ import annotations

import hmac
import secrets
from decimal import Decimal
from typing import NamedTuple

from .models import TokenGrant
from .state import SimState
from .validation import CURRENCY_RE, INVOICE_RE, decimal_from, is_money
from .wire import Request, Response, json_response


class _Binding(NamedTuple):
    """What a token is bound to when requested with ``invoiceID`` (all None otherwise)."""

    invoice_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None


def _bad(error: str, description: str) -> Response:
    return json_response(400, {"error": error, "error_description": description})


def _binding(form: dict[str, str]) -> _Binding | Response:
    """The invoice binding of a token form, or the 400 for a bad one."""
    invoice_id = form.get("invoiceID") or None
    if invoice_id is None:
        return _Binding()
    missing = [k for k in ("amount", "currency", "terminal") if not form.get(k)]
    if missing:
        return _bad("invalid_request", f"missing {', '.join(missing)}")
    if not INVOICE_RE.match(invoice_id):
        return _bad("invalid_request", "invoiceID must be 6-15 digits")
    amount = decimal_from(form["amount"])
    # 0 is a card verification's amount (with USD, for the payment page): epay-api.md section 9.
    if amount is None or not (is_money(amount) or (amount.is_finite() and amount == 0)):
        return _bad("invalid_request", "invalid amount")
    currency = form["currency"]
    if not CURRENCY_RE.match(currency):
        return _bad("invalid_request", "invalid currency")
    return _Binding(invoice_id, amount, currency)


class OAuth:
    """The token endpoint and the bearer check the other areas rely on."""

    def __init__(self, state: SimState) -> None:
        self._state = state

    def token(self, req: Request) -> Response:
        """``POST /oauth2/token``: a client-credentials grant, bound to an invoice or not."""
        form = req.form
        if form is None:
            return _bad("invalid_request", "form body (urlencoded or multipart) required")
        refused = self._client_refusal(form)
        if refused is not None:
            return refused
        binding = _binding(form)
        if isinstance(binding, Response):
            return binding
        grant = self._issue(form, binding)
        settings = self._state.settings
        expires: int | str = (
            str(settings.expires_in) if settings.expires_in_as_string else settings.expires_in
        )
        return json_response(
            200,
            {
                "access_token": grant.access_token,
                "expires_in": expires,
                "refresh_token": grant.refresh_token,
                "scope": grant.scope,
                "token_type": "Bearer",
            },
        )

    def grant(self, token: str | None) -> TokenGrant | None:
        """The grant of a known, unexpired token."""
        if not token:
            return None
        with self._state.lock:
            grant = self._state.tokens.get(token)
        if grant is None or self._state.now() >= grant.expires_at:
            return None
        return grant

    def bearer(self, req: Request) -> TokenGrant | None:
        """The grant of the request's ``Authorization: Bearer`` token, if valid."""
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self.grant(token.strip())

    def _client_refusal(self, form: dict[str, str]) -> Response | None:
        """The answer for a bad grant type, client or terminal; None when they are fine."""
        grant_type = form.get("grant_type")
        if not grant_type:
            return _bad("invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            return _bad("unsupported_grant_type", f"grant_type {grant_type!r} not supported")
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret", "")
        if not client_id or not client_secret:
            return _bad("invalid_request", "client_id and client_secret are required")
        settings = self._state.settings
        if not (
            hmac.compare_digest(client_id.encode(), settings.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), settings.client_secret.encode())
        ):
            return json_response(401, {"error": "invalid_client"})
        terminal = form.get("terminal") or None
        if terminal is not None and settings.terminal(terminal) is None:
            return _bad("invalid_request", "unknown terminal")
        return None

    def _issue(self, form: dict[str, str], binding: _Binding) -> TokenGrant:
        settings = self._state.settings
        grant = TokenGrant(
            access_token=secrets.token_urlsafe(24),
            refresh_token="",  # nosec B106 # ePay sends it empty with client credentials
            scope=form.get("scope") or settings.default_scope,
            client_id=form["client_id"],
            terminal=form.get("terminal") or None,
            expires_at=self._state.now() + settings.expires_in,
            invoice_id=binding.invoice_id,
            amount=binding.amount,
            currency=binding.currency,
            post_link=form.get("postLink", ""),
            failure_post_link=form.get("failurePostLink", ""),
            secret_hash=form.get("secret_hash", ""),
        )
        with self._state.lock:
            self._state.tokens[grant.access_token] = grant
        return grant
