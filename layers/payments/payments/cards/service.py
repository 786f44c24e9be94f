"""Saved cards of an account: list them (and compare with ePay's list), remove one, and the
rules charges and subscriptions follow (a removed card, or another account's, is refused)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from payments.cards.model import Card, CardSource, CardStatus, removal_in_flight
from payments.cards.ports import CardGateway, CardStore
from payments.cards.requests import ListQuery
from payments.cards.setups import setup_terminal
from payments.charges.model import Charge, ChargeStatus
from payments.charges.ports import CardSnapshot
from payments.errors import (
    CardAccountMismatchError,
    CardRemovalInProgressError,
    CardRemovedError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    NotFoundError,
    StaleStateError,
)
from payments.shared.clock import utc_now
from payments.shared.deadline import Deadline

# A refresh compares at most this many of our cards with ePay's list (pages of 100).
REFRESH_PAGES = 10
_KNOWN_LIMIT = 10_000
_SUCCEEDED = frozenset(
    {
        ChargeStatus.AUTHORIZED,
        ChargeStatus.CAPTURED,
        ChargeStatus.PARTIALLY_REFUNDED,
        ChargeStatus.REFUNDED,
    }
)


class CardService:
    """An account's saved cards."""

    def __init__(
        self,
        *,
        cards: CardStore,
        gateway: Callable[[], CardGateway],
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._cards = cards
        # Built on first use: checking a card on a charge needs no ePay client.
        self._gateway = gateway
        self._clock = clock
        self._rand = rand
        # Card ids known to have an item (items are never deleted): `remember` reads each once
        # a container, not once per change of every charge paid with it.
        self._known: set[str] = set()

    # --- the rules charges and subscriptions follow ----------------------------------------

    def check(self, account_id: str, card_id: str) -> None:
        """Refuse a card we know to be removed (409) or saved under another account (422); a
        card we never saw (saved before this service) passes. One strongly consistent read."""
        card = self._cards.get(card_id)
        if card is not None:
            self.check_snapshot(
                account_id, CardSnapshot(card.account_id, card.status is CardStatus.REMOVED)
            )

    def check_snapshot(self, account_id: str, card: CardSnapshot | None) -> None:
        """The rules of `check` on a card read already (a charge reads it with its key)."""
        if card is None:
            return
        if card.account_id != account_id:
            raise CardAccountMismatchError("the card is saved under another account")
        if card.removed:
            raise CardRemovedError("the card was removed from the account")

    def remember(self, charge: Charge) -> Card | None:
        """Record the card of a successful charge when the service has never seen it (a card
        saved before it existed), so the account's list shows it; None when already known."""
        if charge.status not in _SUCCEEDED or not charge.card_id:
            return None
        if charge.card_id in self._known:
            return None
        if len(self._known) >= _KNOWN_LIMIT:
            self._known.clear()
        if self._cards.get(charge.card_id) is not None:
            self._known.add(charge.card_id)
            return None
        now = self._clock()
        card = Card(
            id=charge.card_id,
            account_id=charge.account_id,
            status=CardStatus.ACTIVE,
            source=CardSource.CHARGE,
            created_at=now,
            updated_at=now,
            mask=charge.epay.card_mask,
        )
        added = self._cards.add(card)
        self._known.add(card.id)
        return card if added else None

    # --- list and remove -------------------------------------------------------------------

    def get(self, account_id: str, card_id: str) -> Card:
        """An account's card; NotFoundError for another account's (revealing nothing)."""
        card = self._cards.get(card_id)
        if card is None or card.account_id != account_id:
            raise NotFoundError("no such card")
        return card

    def list_cards(
        self, account_id: str, query: ListQuery, deadline: Deadline
    ) -> tuple[list[Card], dict[str, str] | None]:
        """One page of the account's cards, newest first; with `refresh`, ePay's list is read
        first (cards saved elsewhere are added, those it no longer lists are marked)."""
        if query.refresh:
            self._refresh(account_id, deadline)
        return self._cards.list_by_account(account_id, query.limit, query.cursor)

    def _refresh(self, account_id: str, deadline: Deadline) -> None:
        gateway = self._gateway()
        listed = {c.card_id: c for c in gateway.saved_cards(account_id, deadline, self._terminal())}
        ours: dict[str, Card] = {}
        cursor: dict[str, str] | None = None
        for _page in range(REFRESH_PAGES):
            page, cursor = self._cards.list_by_account(account_id, 100, cursor)
            ours.update((card.id, card) for card in page)
            if cursor is None:
                break
        now = self._clock()
        for card_id, seen in listed.items():
            if card_id in ours:
                continue
            self._cards.add(
                Card(
                    id=card_id,
                    account_id=account_id,
                    status=CardStatus.ACTIVE,
                    source=CardSource.EPAY,
                    created_at=now,
                    updated_at=now,
                    mask=seen.card_mask,
                    payment_available=seen.payment_available,
                    listed_at_epay=True,
                )
            )
        for card in ours.values():
            if card.status is not CardStatus.ACTIVE:
                continue
            entry = listed.get(card.id)
            available = entry.payment_available if entry is not None else card.payment_available
            if (entry is not None, available) == (card.listed_at_epay, card.payment_available):
                continue
            changed = replace(
                card, listed_at_epay=entry is not None, payment_available=available, updated_at=now
            )
            try:
                self._cards.save(card, changed)
            except StaleStateError:
                continue  # changed meanwhile (removed, say): its own writer's state stands

    def remove(self, account_id: str, card_id: str, deadline: Deadline) -> Card:
        """Deactivate a card at ePay and mark it REMOVED, calling ePay once however many callers
        race; a removed card is answered as it is."""
        card = self.get(account_id, card_id)
        if card.status is CardStatus.REMOVED:
            return card
        now = self._clock()
        if removal_in_flight(card, now):
            raise CardRemovalInProgressError("the card is being removed")
        try:
            claimed = self._cards.save(card, replace(card, removal_claimed_at=now, updated_at=now))
        except StaleStateError as exc:
            latest = self.get(account_id, card_id)
            if latest.status is CardStatus.REMOVED:
                return latest
            raise CardRemovalInProgressError("the card is being removed") from exc
        try:
            self._gateway().deactivate_card(card.id, self._terminal(), deadline)
        except GatewayRejectedError:
            pass  # ePay has no such active card: nothing there to deactivate any more
        except GatewayError as exc:
            # Deactivated or not: release the claim; a retry asks ePay again (a second
            # deactivation is refused as "no such card", which ends the removal the same way).
            self._cards.save(claimed, replace(claimed, removal_claimed_at=None))
            raise GatewayUnavailableError(
                "ePay could not deactivate the card; retry", operation="deactivate"
            ) from exc
        removed = replace(
            claimed,
            status=CardStatus.REMOVED,
            removed_at=self._clock(),
            removal_claimed_at=None,
            updated_at=self._clock(),
        )
        return self._cards.save(claimed, removed)

    def _terminal(self) -> str:
        """The terminal card lists and deactivations go through (a setup terminal)."""
        order = setup_terminal(self._gateway().terminals(), self._rand)
        return order[0].id if order else ""
