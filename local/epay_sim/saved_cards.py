"""Saved cards: ``GET /cards/{accountId}`` lists, ``POST /card/deactivate/{cardId}`` removes.

An account's cards are the listed test cards (every account has them) and the cards saved under
that account on the payment page (``payform``, ``cardSave: true``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .cards import CARDS, NO_RECORD_CODE, NO_RECORD_MESSAGE, UNKNOWN_ACCOUNT_PREFIX, CardProfile
from .models import SavedCard
from .oauth import OAuth
from .state import SimState
from .wire import Request, Response, error, json_response, kz_time, op_failed, unauthorized


class SavedCards:
    """The test cards as every account's saved cards plus the account's payment-page cards
    (PascalCase keys, as ePay answers)."""

    def __init__(self, state: SimState, oauth: OAuth) -> None:
        self._state = state
        self._oauth = oauth

    def list_cards(self, req: Request) -> Response:
        """The listed test cards, then the account's payment-page cards, none deactivated.

        An account id starting with ``unknown`` has no test cards: without payment-page cards
        it is ePay's "no record"."""
        grant = self._oauth.bearer(req)
        if grant is None:
            return unauthorized()
        account_id = req.params["account"]
        unknown = account_id.lower().startswith(UNKNOWN_ACCOUNT_PREFIX)
        created = kz_time(self._state.now())
        terminal = grant.terminal or self._state.settings.terminal_id
        with self._state.lock:
            fixed = [
                _test_card_row(card_id, profile, account_id, grant.client_id, terminal, created)
                for card_id, profile in CARDS.items()
                if not unknown and profile.listed and card_id not in self._state.deactivated
            ]
            saved = [
                _saved_card_row(card)
                for card in self._state.saved_cards.values()
                if card.account_id == account_id and card.card_id not in self._state.deactivated
            ]
        if unknown and not saved:
            return error(NO_RECORD_CODE, NO_RECORD_MESSAGE)
        return json_response(200, fixed + saved)

    def deactivate(self, req: Request) -> Response:
        """Deactivate a listed test card or a payment-page card; charging it is then "no such
        card", and deactivating it again is refused (code 100)."""
        if self._oauth.bearer(req) is None:
            return unauthorized()
        card_id = req.params["card"]
        with self._state.lock:
            profile = CARDS.get(card_id)
            known = card_id in self._state.saved_cards or (profile is not None and profile.listed)
            if not known or card_id in self._state.deactivated:
                return op_failed("no such card")
            self._state.deactivated.add(card_id)
        return json_response(200, {})


def _test_card_row(
    card_id: str,
    profile: CardProfile,
    account_id: str,
    client_id: str,
    terminal: str,
    created: str,
) -> dict[str, Any]:
    """A test card as the list shows it, its record's values derived from its id."""
    return _row(
        card_id,
        account_id=account_id,
        client_id=client_id,
        terminal=terminal,
        list_mask=profile.list_mask,
        payer_name=profile.payer_name,
        transaction_id=_derived(card_id, "tx"),
        reference=str(int(_derived(card_id, "rrn")[:10], 16))[:12],
        int_reference=_derived(card_id, "int")[:16].upper(),
        created=created,
        available=profile.payment_available,
    )


def _saved_card_row(card: SavedCard) -> dict[str, Any]:
    """A payment-page card as the list shows it: the payment that saved it is its record."""
    return _row(
        card.card_id,
        account_id=card.account_id,
        client_id=card.client_id,
        terminal=card.terminal,
        list_mask=card.profile.list_mask,
        payer_name=card.payer_name,
        transaction_id=card.transaction_id,
        reference=card.reference,
        int_reference=card.int_reference,
        created=kz_time(card.created_at),
        available=card.profile.payment_available,
    )


def _row(
    card_id: str,
    *,
    account_id: str,
    client_id: str,
    terminal: str,
    list_mask: str,
    payer_name: str,
    transaction_id: str,
    reference: str,
    int_reference: str,
    created: str,
    available: bool,
) -> dict[str, Any]:
    """One card of ``GET /cards/{accountId}``, in ePay's keys and casing."""
    return {
        "ID": card_id,
        "TransactionId": transaction_id,
        "AccountID": account_id,
        "MerchantID": client_id,
        "Terminal": terminal,
        "CardHash": hashlib.sha256(card_id.encode()).hexdigest()[:32].upper(),
        "CardMask": list_mask,
        "PayerName": payer_name,
        "Reference": reference,
        "IntReference": int_reference,
        "Token": _derived(card_id, "token"),
        "CreatedDate": created,
        "PaymentAvailable": available,
    }


def _derived(card_id: str, label: str) -> str:
    """A stable value of the card's record (the payment that saved it), derived from its id."""
    return hashlib.sha256(f"{label}:{card_id}".encode()).hexdigest()
