"""The cards domain's ports: its stores and what it asks of ePay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from payments.cards.model import Card, CardSetup
    from payments.charges.model import Charge, HistoryEntry
    from payments.charges.payment_gateway import InvoiceTokenRequest, StatusResult, Token
    from payments.charges.terminals import Terminal
    from payments.shared.deadline import Deadline
    from payments.shared.idempotency import IdempotencyRecord


class SetupStore(Protocol):
    """Card setups with their guards (idempotency key, invoice id and suffix)."""

    def create(self, setup: CardSetup) -> None:
        """Write a new setup with its guards, or DuplicateKeyError naming the guard taken."""
        ...

    def get(self, setup_id: str) -> CardSetup | None:
        """Read a setup (strongly consistent)."""
        ...

    def get_by_invoice(self, invoice_id: str) -> CardSetup | None:
        """The setup holding this invoice id, or None."""
        ...

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """Read what a setup idempotency key created."""
        ...

    def save(self, current: CardSetup, updated: CardSetup) -> CardSetup:
        """Replace `current` if its version is still the one read (StaleStateError)."""
        ...

    def complete(
        self,
        current: CardSetup,
        updated: CardSetup,
        card: Card | None,
        charge: tuple[Charge, HistoryEntry] | None,
    ) -> CardSetup:
        """In one transaction: the setup's final state (versioned), the saved card (new, or one
        of the same account: DuplicateKeyError("card") otherwise) and, for a paying setup, its
        new charge with its first history entry, the invoice then naming that charge."""
        ...

    def due_setup_ids(self, shard: int, now: datetime, limit: int) -> list[str]:
        """Ids of setups due for a check in one shard (eventually consistent: re-read)."""
        ...


class CardStore(Protocol):
    """Saved cards, one item per card id, listed per account newest first."""

    def get(self, card_id: str) -> Card | None:
        """Read a card (strongly consistent)."""
        ...

    def add(self, card: Card) -> bool:
        """Write a card unless one with its id exists; False when it did."""
        ...

    def save(self, current: Card, updated: Card) -> Card:
        """Replace `current` if its version is still the one read (StaleStateError)."""
        ...

    def list_by_account(
        self, account_id: str, limit: int, cursor: dict[str, str] | None
    ) -> tuple[list[Card], dict[str, str] | None]:
        """One page of an account's cards, newest first, and the position to go on from."""
        ...


class ListedCard(Protocol):
    """One card of ePay's list (`GET /cards/{accountId}`)."""

    @property
    def card_id(self) -> str: ...

    @property
    def card_mask(self) -> str | None: ...

    @property
    def payment_available(self) -> bool: ...


class CardGateway(Protocol):
    """What cards ask of ePay (payments.epay.client.EpayClient)."""

    def terminals(self) -> tuple[Terminal, ...]:
        """The merchant's terminals (the first is the default)."""
        ...

    def invoice_token(self, request: InvoiceTokenRequest, deadline: Deadline) -> Token:
        """A token bound to one invoice (the payment page's `auth`)."""
        ...

    def status(self, invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        """The status of a terminal's invoice."""
        ...

    def saved_cards(
        self, account_id: str, deadline: Deadline, terminal_id: str = ""
    ) -> Sequence[ListedCard]:
        """The cards ePay keeps for an account."""
        ...

    def deactivate_card(self, card_id: str, terminal_id: str, deadline: Deadline) -> None:
        """Deactivate a card at ePay (GatewayRejectedError: ePay has no such active card)."""
        ...
