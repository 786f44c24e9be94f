"""Saved cards: ``GET /cards/{accountId}`` lists, ``POST /card/deactivate/{cardId}`` removes."""

from __future__ import annotations

import hashlib

from .cards import CARDS, NO_RECORD_CODE, NO_RECORD_MESSAGE, UNKNOWN_ACCOUNT_PREFIX
from .oauth import OAuth
from .state import SimState
from .wire import Request, Response, error, json_response, kz_time, op_failed, unauthorized


class SavedCards:
    """The test cards as every account's saved cards (PascalCase keys, as ePay answers)."""

    def __init__(self, state: SimState, oauth: OAuth) -> None:
        self._state = state
        self._oauth = oauth

    def list_cards(self, req: Request) -> Response:
        """The listed test cards that are not deactivated."""
        grant = self._oauth.bearer(req)
        if grant is None:
            return unauthorized()
        account_id = req.params["account"]
        if account_id.lower().startswith(UNKNOWN_ACCOUNT_PREFIX):
            return error(NO_RECORD_CODE, NO_RECORD_MESSAGE)
        created = kz_time(self._state.now())
        terminal = grant.terminal or self._state.settings.terminal_id
        with self._state.lock:
            cards = [
                {
                    "ID": card_id,
                    "TransactionId": _derived(card_id, "tx"),
                    "AccountID": account_id,
                    "MerchantID": grant.client_id,
                    "Terminal": terminal,
                    "CardHash": hashlib.sha256(card_id.encode()).hexdigest()[:32].upper(),
                    "CardMask": profile.list_mask,
                    "PayerName": profile.payer_name,
                    "Reference": str(int(_derived(card_id, "rrn")[:10], 16))[:12],
                    "IntReference": _derived(card_id, "int")[:16].upper(),
                    "Token": _derived(card_id, "token"),
                    "CreatedDate": created,
                    "PaymentAvailable": profile.payment_available,
                }
                for card_id, profile in CARDS.items()
                if profile.listed and card_id not in self._state.deactivated
            ]
        return json_response(200, cards)

    def deactivate(self, req: Request) -> Response:
        """Deactivate a listed card; charging it is then "no such card"."""
        if self._oauth.bearer(req) is None:
            return unauthorized()
        card_id = req.params["card"]
        with self._state.lock:
            profile = CARDS.get(card_id)
            if profile is None or not profile.listed or card_id in self._state.deactivated:
                return op_failed("no such card")
            self._state.deactivated.add(card_id)
        return json_response(200, {})


def _derived(card_id: str, label: str) -> str:
    """A stable value of the card's record (the payment that saved it), derived from its id."""
    return hashlib.sha256(f"{label}:{card_id}".encode()).hexdigest()
