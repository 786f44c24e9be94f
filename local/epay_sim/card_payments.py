"""Payments by saved card: ``POST /payments/cards/auth`` and the status API.

(Not named ``payments``: that is the project's layer, which the simulator never imports.)
"""

from __future__ import annotations

import base64
import secrets
import uuid
from decimal import Decimal
from typing import Any

from .cards import CARDS, DECLINE_MESSAGES, ISSUER, NO_SUCH_CARD_CODE, CardProfile, card_type
from .models import LedgerEntry, NotifyLinks, ThreeDSStep, TokenGrant
from .oauth import OAuth
from .postlinks import PostLinks
from .state import SimState
from .validation import auth_problem
from .wire import (
    ERR_INVOICE_USED,
    ERR_REQUEST,
    Request,
    Response,
    error,
    json_response,
    kz_time,
    unauthorized,
)


def approve(entry: LedgerEntry, final: str, source: str) -> None:
    """Commit an approval: ``final`` is AUTH (held) or CHARGE (taken)."""
    entry.status_name = final
    entry.reference = f"{secrets.randbelow(9 * 10**11) + 10**11}"
    entry.int_reference = secrets.token_hex(8).upper()
    entry.approval_code = f"{secrets.randbelow(10**6):06d}"
    entry.reason_code = 0
    entry.reason = ""
    if final == "CHARGE":
        entry.captured_amount = entry.amount
    entry.history.append(f"{source}: {final} {entry.amount} {entry.currency}")


def reject(entry: LedgerEntry, code: int, message: str, source: str = "auth") -> None:
    """Commit a decline with the issuer's ``code``."""
    entry.status_name = "REJECT"
    entry.reason_code = code
    entry.reason = message
    entry.history.append(f"{source}: REJECT {code} {message}")


def _payer_echo(entry: LedgerEntry) -> dict[str, Any]:
    """What an auth answer echoes of the request, as ePay's records show it (``accountId``)."""
    return {
        "invoiceID": entry.invoice_id,
        "invoiceIdAlt": entry.invoice_id_alt,
        "accountId": entry.account_id,
        "amount": entry.amount,
        "amountBonus": 0,
        "currency": entry.currency,
        "description": entry.description,
        "email": entry.email,
        "phone": entry.phone,
        "language": entry.language,
    }


def auth_body(entry: LedgerEntry) -> dict[str, Any]:
    """The 200 answer of an approved auth, in ePay's casing (``invoiceID``, ``cardID``)."""
    return {
        "id": entry.transaction_id,
        **_payer_echo(entry),
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


def amounts(entry: LedgerEntry) -> dict[str, Any]:
    """The status API's three amounts (ePay's example: a 22.22 payment with 10 returned shows
    orgAmount 22.22, amount 12.22, payoutAmount 10): what the transaction was made for, what it
    stands at now, and what went back to the card (orgAmount = amount + payoutAmount)."""
    if entry.status_name in ("CANCEL", "CANCEL_OLD", "REFUND"):
        standing = Decimal(0)
    elif entry.status_name == "CHARGE":
        standing = entry.captured_amount - entry.refunded_amount
    else:
        standing = entry.amount
    return {
        "amount": standing,
        "amountBonus": 0,
        "orgAmount": entry.amount,
        "payoutAmount": entry.amount - standing,
    }


class CardPayments:
    """Charges a saved card (the card id decides the outcome) and answers status queries."""

    def __init__(self, state: SimState, oauth: OAuth, postlinks: PostLinks) -> None:
        self._state = state
        self._oauth = oauth
        self._postlinks = postlinks

    # ---------------------------------------------------------------- auth

    def auth(self, req: Request) -> Response:
        """``POST /payments/cards/auth``: validate, commit one transaction, answer, notify."""
        grant = self._oauth.bearer(req)
        if grant is None:
            return unauthorized()
        if "application/json" not in req.headers.get("content-type", "").lower():
            return error(ERR_REQUEST, "Content-Type must be application/json")
        body = req.json
        if not isinstance(body, dict):
            return error(ERR_REQUEST, "body must be a JSON object")
        problem = auth_problem(body, grant)
        if problem is not None:
            return problem
        with self._state.lock:
            refused = self._invoice_refusal(body["invoiceId"], body["terminalId"])
            if refused is not None:
                return refused
            profile = self._usable_card(body["cardId"]["id"], body.get("accountId", ""))
            entry = self._open(body, grant, profile)
            response = self._decide(entry, profile, body, grant)
            final = entry.status_name != "3D"
        if final:
            self._postlinks.notify(entry)
        return response

    def _invoice_refusal(self, invoice_id: str, terminal_id: str) -> Response | None:
        """ERR_INVOICE_USED when the invoice (or its last 6 digits) already has a transaction
        on this terminal (each terminal has its own invoice space)."""
        existing = self._state.entry(invoice_id, terminal_id)
        if existing is not None:
            # Counted, so that a client which re-sends an auth is caught by the tests.
            existing.auth_count += 1
            existing.history.append(f"auth #{existing.auth_count} refused: invoice reused")
        clash = self._state.invoice_clash(invoice_id, terminal_id)
        return None if clash is None else error(ERR_INVOICE_USED, clash)

    def _usable_card(self, card_id: str, account_id: str) -> CardProfile | None:
        """The card's profile: a test card, or a card saved on the payment page under this
        account; None for an unknown or deactivated card, or one saved under another account."""
        if card_id in self._state.deactivated:
            return None
        saved = self._state.saved_cards.get(card_id)
        if saved is not None:
            return saved.profile if saved.account_id == account_id else None
        return CARDS.get(card_id)

    def _open(
        self, body: dict[str, Any], grant: TokenGrant, profile: CardProfile | None
    ) -> LedgerEntry:
        """A NEW ledger entry for a valid auth body, and where its notifications go."""
        invoice_id: str = body["invoiceId"]
        entry = LedgerEntry(
            invoice_id=invoice_id,
            transaction_id=str(uuid.uuid4()),
            status_name="NEW",
            amount=Decimal(body["amount"]),
            currency=body["currency"],
            terminal=body["terminalId"],
            card_id=body["cardId"]["id"],
            account_id=body.get("accountId", ""),
            card_mask=profile.mask if profile else "",
            invoice_id_alt=body.get("invoiceIdAlt") or "",
            description=body.get("description", ""),
            language=body.get("language") or "",
            name=body.get("name") or "",
            email=body.get("email") or "",
            phone=body.get("phone") or "",
            recurrent=bool(body.get("recurrent", False)),
            created_at=self._state.now(),
        )
        self._state.record(entry)
        self._state.links[entry.transaction_id] = NotifyLinks(
            post_link=body.get("postLink") or grant.post_link,
            failure_post_link=body.get("failurePostLink") or grant.failure_post_link,
            secret_hash=grant.secret_hash,
        )
        return entry

    def _decide(
        self,
        entry: LedgerEntry,
        profile: CardProfile | None,
        body: dict[str, Any],
        grant: TokenGrant,
    ) -> Response:
        """Play the issuer for the entry's card: decline, ask for 3DS, or approve."""
        if profile is None:
            reject(entry, NO_SUCH_CARD_CODE, DECLINE_MESSAGES[NO_SUCH_CARD_CODE])
            return error(entry.reason_code, entry.reason)
        if profile.outcome == "REJECT":
            reject(entry, profile.code, profile.message)
            return error(entry.reason_code, entry.reason)
        settings = self._state.settings
        terminal = settings.terminal(entry.terminal)
        if profile.outcome == "3D" and (terminal is None or terminal.three_ds):
            return self._ask_for_three_ds(entry, body, grant)
        # A terminal set up without 3-D Secure approves the 3DS card without the step.
        single_stage = profile.outcome == "CHARGE" or settings.is_single_stage(entry.terminal)
        approve(entry, "CHARGE" if single_stage else "AUTH", "auth")
        return json_response(200, auth_body(entry))

    def _ask_for_three_ds(
        self, entry: LedgerEntry, body: dict[str, Any], grant: TokenGrant
    ) -> Response:
        entry.status_name = "3D"
        entry.secure = True
        entry.history.append("auth: 3-D Secure required")
        md = secrets.token_hex(16)
        pa_req = base64.b64encode(secrets.token_bytes(96)).decode("ascii")
        self._state.three_ds[md] = ThreeDSStep(
            md=md,
            pa_req=pa_req,
            invoice_id=entry.invoice_id,
            transaction_id=entry.transaction_id,
            access_token=grant.access_token,
            back_link=body.get("backLink", ""),
            failure_back_link=body.get("failureBackLink", ""),
        )
        return json_response(
            200,
            {
                "id": entry.transaction_id,
                **_payer_echo(entry),
                "status": "3D",
                "code": 0,
                "reason": "",
                "cardID": entry.card_id,
                "secure3D": {"paReq": pa_req, "md": md, "action": f"{self._state.base_url}/acs"},
            },
        )

    # ---------------------------------------------------------------- status

    def status(self, req: Request) -> Response:
        """``GET /check-status/payment/transaction/{invoiceId}``: the authority on outcomes."""
        grant = self._oauth.bearer(req)
        if grant is None:
            return unauthorized()
        if grant.terminal is None:
            return _result("104", "No terminal in the token")
        invoice_id = req.params["invoice"]
        with self._state.lock:
            entry = self._state.entry(invoice_id, grant.terminal)
            if entry is None:
                # The invoice exists, on another terminal of the merchant.
                if self._state.has_invoice(invoice_id):
                    return _result("106", "Wrong terminal")
                return _result("102", "No such transaction")
            transaction = self._transaction(entry)
        return json_response(
            200, {"resultCode": "100", "resultMessage": "Success", "transaction": transaction}
        )

    def _transaction(self, entry: LedgerEntry) -> dict[str, Any]:
        return {
            "id": entry.transaction_id,
            "createdDate": kz_time(entry.created_at),
            "invoiceID": entry.invoice_id,
            "invoiceIdAlt": entry.invoice_id_alt,
            **amounts(entry),
            "currency": entry.currency,
            "terminal": self._state.settings.terminal_code_of(entry.terminal),
            "terminalID": entry.terminal,
            "accountID": entry.account_id,
            "description": entry.description,
            "language": entry.language,
            "cardMask": entry.card_mask,
            "cardType": card_type(entry.card_mask),
            "issuer": ISSUER if entry.card_mask else "",
            "reference": entry.reference,
            "intReference": entry.int_reference,
            "approvalCode": entry.approval_code,
            "secure": entry.secure,  # a boolean here; postLinks say "yes"/"no"
            "data": "",
            "reason": entry.reason or ("success" if entry.reason_code == 0 else ""),
            "reasonCode": str(entry.reason_code),  # the status API writes it as a string
            "statusName": entry.status_name,
            "name": entry.name,
            "email": entry.email,
            "phone": entry.phone,
            "cardID": entry.card_id,
        }


def _result(code: str, message: str) -> Response:
    """A status answer without a transaction (``resultCode`` other than 100)."""
    return json_response(200, {"resultCode": code, "resultMessage": message})
