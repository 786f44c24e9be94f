"""ePay's payment page (the widget's form): where a customer types a card and a card is saved.

The HTTP contract (epay-api.md section 9; ids and names are stable for browser tests):

* ``GET /payform/payment-api.js``: ``window.halyk = {pay, showPaymentWidget}``; ``pay`` POSTs the
  payment object as a form to ``/payform/`` (``auth`` as JSON text, booleans "true"/"false").
* ``POST /payform/`` (the payment object): ``auth.access_token`` must be a live token requested
  with ``invoiceID``; ``invoiceId``, ``amount``, ``currency`` and ``terminal`` must equal its
  binding; ``paymentType`` is empty or ``cardVerification`` (then amount 0, currency USD);
  ``backLink`` is required; ``cardSave: true`` needs ``accountId``. Refused: 400 HTML (``#error``).
  Else 200 HTML: ``form#payform`` POSTing to ``/payform/pay`` a hidden ``session``,
  ``cardNumber`` (``#card-number``) and a button ``outcome``: ``approve`` (``#approve``),
  ``decline`` (``#decline``) or ``3ds`` (``#three-ds``).
* ``POST /payform/pay``: approve -> VERIFIED (card verification), else AUTH (CHARGE on a
  single-stage terminal); with ``cardSave`` a new card id is saved under ``accountId``;
  postLink ``code: "ok"``; 303 to ``backLink``. decline -> REJECT 484; failurePostLink (else
  postLink) ``code: "error"``; 303 to ``failureBackLink`` (else ``backLink``). 3ds -> the entry
  is ``3D`` and the issuer's page answers: ``form#acs-form`` POSTing ``session`` and ``result``
  (``#acs-approve``: approve, ``#acs-fail``: fail) to ``/payform/3ds``, which ends as approve
  (3DS final status) or as a decline with 455. A session is used once: again, 409 HTML.

The typed card number (digits; empty: ``DEFAULT_CARD_NUMBER``) gives the mask, and how the saved
card answers later auths: as the test card with that mask (``...0194`` asks for 3DS, ``...0202``
is declined 484), else approved. postLinks are ``PostLinks.notify``'s: the token's
``secret_hash``, the payment object's links (else the token's) and every postLink fault.
"""

from __future__ import annotations

import json
import secrets
import uuid
from decimal import Decimal

from . import payform_pages as pages
from .card_payments import approve, reject
from .cards import (
    DECLINE_MESSAGES,
    DEFAULT_CARD_NUMBER,
    ISSUER,
    card_mask,
    card_type,
    saved_profile,
)
from .models import LedgerEntry, NotifyLinks, PayformSession, SavedCard, TokenGrant
from .oauth import OAuth
from .postlinks import PostLinks
from .state import SimState
from .validation import CURRENCY_RE, INVOICE_RE, MAX_DESCRIPTION_BYTES, decimal_from
from .wire import Request, Response, is_http_url

VERIFICATION = "cardVerification"
DECLINE_CODE = 484  # the decline button: insufficient funds
THREE_DS_FAILED = 455  # the issuer's Fail button
OUTCOMES = ("approve", "decline", "3ds")
DEFAULT_PAYER_NAME = "TEST CARDHOLDER"
_CENT = Decimal("0.01")


def _number_mask(typed: str) -> str | None:
    """The mask of a typed card number (spaces and dashes ignored), None when it is no number."""
    digits = "".join(ch for ch in typed if ch not in " -") or DEFAULT_CARD_NUMBER
    if not digits.isascii() or not digits.isdigit() or not 13 <= len(digits) <= 19:
        return None
    return card_mask(digits)


def _amount_of(raw: str) -> Decimal | None:
    """A non-negative amount with at most 2 decimals, else None."""
    amount = decimal_from(raw)
    if amount is None or not amount.is_finite() or amount < 0:
        return None
    return amount if amount == amount.quantize(_CENT) else None


def _format_problem(payment: dict[str, str]) -> str | None:
    """Field formats of the payment object."""
    if not INVOICE_RE.match(payment.get("invoiceId", "")):
        return "invoiceId must be 6-15 digits"
    alt = payment.get("invoiceIdAlt", "")
    if alt and not INVOICE_RE.match(alt):
        return "invoiceIdAlt must be 6-15 digits"
    if _amount_of(payment.get("amount", "")) is None:
        return "amount must be a number, at least 0, with at most 2 decimals"
    if not CURRENCY_RE.match(payment.get("currency", "")):
        return "currency must be an ISO 4217 letter code"
    if not payment.get("terminal"):
        return "terminal is required"
    if len(payment.get("description", "").encode("utf-8")) > MAX_DESCRIPTION_BYTES:
        return f"description is longer than {MAX_DESCRIPTION_BYTES} bytes"
    if payment.get("cardSave", "") not in ("", "true", "false"):
        return "cardSave must be true or false"
    if payment.get("cardSave") == "true" and not payment.get("accountId"):
        return "cardSave needs the accountId the card is saved under"
    if not is_http_url(payment.get("backLink", "")):
        return "backLink must be an http(s) URL"
    for link in ("failureBackLink", "postLink", "failurePostLink"):
        if payment.get(link) and not is_http_url(payment[link]):
            return f"{link} must be an http(s) URL"
    return None


def _kind_problem(payment: dict[str, str], amount: Decimal) -> str | None:
    """A payment (amount above 0) or a card verification (amount 0, USD)."""
    kind = payment.get("paymentType", "")
    if kind == VERIFICATION:
        if amount != 0 or payment["currency"] != "USD":
            return "a card verification is amount 0, currency USD"
        return None
    if kind:
        return f"paymentType must be empty or {VERIFICATION!r}"
    return None if amount > 0 else "amount must be above 0 (or paymentType cardVerification)"


def _binding_problem(payment: dict[str, str], amount: Decimal, grant: TokenGrant) -> str | None:
    """Where the payment object differs from what its token is bound to."""
    if grant.invoice_id is None:
        return "the token was not requested for an invoice (invoiceID)"
    if payment["invoiceId"] != grant.invoice_id:
        return "invoiceId differs from the token's invoiceID"
    if grant.amount is None or amount != grant.amount:
        return "amount differs from the token's amount"
    if payment["currency"] != grant.currency:
        return "currency differs from the token's currency"
    if payment["terminal"] != grant.terminal:
        return "terminal differs from the token's terminal"
    return None


def _redirect(location: str) -> Response:
    return Response(303, b"", "text/html; charset=utf-8", {"Location": location})


class PaymentForm:
    """The widget script, the payment page, its outcomes and the issuer's 3DS step."""

    def __init__(self, state: SimState, oauth: OAuth, postlinks: PostLinks) -> None:
        self._state = state
        self._oauth = oauth
        self._postlinks = postlinks

    def script(self, req: Request) -> Response:  # noqa: ARG002 (a route handler)
        """``GET /payform/payment-api.js``."""
        return pages.widget_script(f"{self._state.base_url}/payform/")

    # ---------------------------------------------------------------- the page

    def page(self, req: Request) -> Response:
        """``POST /payform/``: check the payment object and its token, open a session."""
        if req.form is None:
            return pages.refusal(400, "the payment object must come as a form (urlencoded)")
        payment = dict(req.form)
        grant = self._grant_of(payment.pop("auth", ""))
        if isinstance(grant, str):
            return pages.refusal(400, grant)
        problem = _format_problem(payment)
        amount = _amount_of(payment.get("amount", "")) or Decimal(0)
        problem = (
            problem
            or _kind_problem(payment, amount)
            or _binding_problem(payment, amount, grant)
            or self._state.invoice_clash(payment["invoiceId"], payment["terminal"])
        )
        if problem is not None:
            return pages.refusal(400, problem)
        session = PayformSession(
            session_id=secrets.token_urlsafe(24),
            grant=grant,
            payment=payment,
            amount=amount,
            verification=payment.get("paymentType") == VERIFICATION,
            card_save=payment.get("cardSave") == "true",
        )
        with self._state.lock:
            self._state.payforms[session.session_id] = session
        return pages.payment_page(
            action=f"{self._state.base_url}/payform/pay",
            session_id=session.session_id,
            payment=payment,
            amount=amount,
            verification=session.verification,
        )

    def _grant_of(self, auth: str) -> TokenGrant | str:
        """The live grant of the payment object's ``auth`` (the token JSON), or the refusal."""
        try:
            token = json.loads(auth)
        except ValueError:
            return "auth must be the token JSON"
        if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
            return "auth must be the token JSON with access_token"
        grant = self._oauth.grant(token["access_token"])
        if grant is None:
            return "auth.access_token is unknown or expired"
        return grant

    # ---------------------------------------------------------------- the outcomes

    def pay(self, req: Request) -> Response:
        """``POST /payform/pay``: the customer's card and button decide the payment."""
        form = req.form or {}
        outcome = form.get("outcome", "")
        with self._state.lock:
            session = self._state.payforms.get(form.get("session", ""))
            refused = self._pay_refusal(session, outcome)
            if refused is not None:
                return refused
            assert session is not None  # checked by _pay_refusal
            mask = _number_mask(form.get("cardNumber", ""))
            if mask is None:
                return pages.refusal(400, "the card number must be 13-19 digits")
            entry = self._open(session, mask)
            if outcome == "3ds":
                session.stage = "3ds"
                entry.status_name = "3D"
                entry.secure = True
                entry.history.append("payform: 3-D Secure required")
                return pages.issuer_page(
                    action=f"{self._state.base_url}/payform/3ds",
                    session_id=session.session_id,
                    amount=entry.amount,
                    currency=entry.currency,
                    mask=mask,
                )
            location = self._finish(session, entry, outcome == "approve", DECLINE_CODE)
        self._postlinks.notify(entry)
        return _redirect(location)

    def issuer(self, req: Request) -> Response:
        """``POST /payform/3ds``: the issuer's verdict ends a ``3D`` payment-page payment."""
        form = req.form or {}
        result = form.get("result", "")
        with self._state.lock:
            session = self._state.payforms.get(form.get("session", ""))
            if session is None:
                return pages.refusal(400, "unknown payment session")
            if session.stage != "3ds":
                return pages.refusal(409, "this 3-D Secure step is not waiting (already done)")
            if result not in ("approve", "fail"):
                return pages.refusal(400, "result must be approve or fail")
            entry = self._state.entry_by_transaction(session.transaction_id)
            if entry is None:  # the ledger was reset while the customer was at the issuer
                return pages.refusal(400, "unknown payment session")
            location = self._finish(session, entry, result == "approve", THREE_DS_FAILED)
        self._postlinks.notify(entry)
        return _redirect(location)

    def _pay_refusal(self, session: PayformSession | None, outcome: str) -> Response | None:
        """Why this submit of the payment page is refused (nothing changes), or None."""
        if session is None:
            return pages.refusal(400, "unknown payment session")
        if session.stage != "form":
            return pages.refusal(409, "this payment was already submitted")
        if outcome not in OUTCOMES:
            return pages.refusal(400, "outcome must be approve, decline or 3ds")
        if self._oauth.grant(session.grant.access_token) is None:
            return pages.refusal(400, "the payment session has expired (its token expired)")
        payment = session.payment
        clash = self._state.invoice_clash(payment["invoiceId"], payment["terminal"])
        return None if clash is None else pages.refusal(409, clash)

    def _open(self, session: PayformSession, mask: str) -> LedgerEntry:
        """A NEW ledger entry for the session's invoice, and where its notifications go."""
        payment, grant = session.payment, session.grant
        entry = LedgerEntry(
            invoice_id=payment["invoiceId"],
            transaction_id=str(uuid.uuid4()),
            status_name="NEW",
            amount=session.amount,
            currency=payment["currency"],
            terminal=payment["terminal"],
            card_id="",
            account_id=payment.get("accountId", ""),
            card_mask=mask,
            invoice_id_alt=payment.get("invoiceIdAlt", ""),
            description=payment.get("description", ""),
            language=payment.get("language", ""),
            name=payment.get("name", ""),
            email=payment.get("email", ""),
            phone=payment.get("phone", ""),
            created_at=self._state.now(),
        )
        entry.history.append(f"payform: {payment.get('paymentType') or 'payment'} {mask}")
        session.transaction_id = entry.transaction_id
        self._state.record(entry)
        self._state.links[entry.transaction_id] = NotifyLinks(
            post_link=payment.get("postLink") or grant.post_link,
            failure_post_link=payment.get("failurePostLink") or grant.failure_post_link,
            secret_hash=grant.secret_hash,
        )
        return entry

    def _finish(
        self, session: PayformSession, entry: LedgerEntry, approved: bool, fail_code: int
    ) -> str:
        """Commit the outcome (saving the card on approval with ``cardSave``); returns where
        the browser goes back to."""
        session.stage = "done"
        payment = session.payment
        if not approved:
            reject(entry, fail_code, DECLINE_MESSAGES[fail_code], source="payform")
            return payment.get("failureBackLink") or payment["backLink"]
        settings = self._state.settings
        if session.verification:
            final = "VERIFIED"
        elif entry.secure:
            final = settings.final_three_ds_status(entry.terminal)
        else:
            final = "CHARGE" if settings.is_single_stage(entry.terminal) else "AUTH"
        approve(entry, final, "payform")
        if session.verification:  # ePay's verification postLinks carry neither (real messages)
            entry.reference = entry.approval_code = ""
        if session.card_save:
            self._save_card(session, entry)
        return payment["backLink"]

    def _save_card(self, session: PayformSession, entry: LedgerEntry) -> None:
        """A new card id for the entry's card, saved under its account."""
        payer_name = (entry.name or DEFAULT_PAYER_NAME).upper()
        card = SavedCard(
            card_id=str(uuid.uuid4()),
            account_id=entry.account_id,
            client_id=session.grant.client_id,
            terminal=entry.terminal,
            mask=entry.card_mask,
            card_type=card_type(entry.card_mask),
            issuer=ISSUER,
            payer_name=payer_name,
            transaction_id=entry.transaction_id,
            reference=entry.reference,
            int_reference=entry.int_reference,
            created_at=self._state.now(),
            profile=saved_profile(entry.card_mask, payer_name),
        )
        entry.card_id = card.card_id
        entry.history.append("payform: card saved")
        self._state.saved_cards[card.card_id] = card
