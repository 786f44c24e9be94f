"""The charges domain's ports to storage and telemetry (the ePay port is payment_gateway)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from payments.charges.model import Charge, ChargeStatus, HistoryEntry, Source
    from payments.charges.search import Listing
    from payments.errors import GatewayError
    from payments.shared.idempotency import IdempotencyRecord
    from payments.shared.payer import Payer


class ChargeStore(Protocol):
    """Charges with their guards (invoice id and suffix) and append-only history."""

    def create(self, charge: Charge, entry: HistoryEntry) -> None:
        """Write a new charge with its guards, or DuplicateKeyError naming the guard taken."""
        ...

    def get(self, charge_id: str) -> Charge | None:
        """Read a charge (strongly consistent)."""
        ...

    def get_by_invoice(self, invoice_id: str) -> Charge | None:
        """The charge holding this invoice id, or None."""
        ...

    def get_idempotency(self, key: str, charge_id: str) -> IdempotencyRecord | None:
        """What `key` created: the charge `charge_id` (derived from the key), or the charge a key
        used before ids were derived names; None if the key is new."""
        ...

    def get_idempotency_and_card(
        self, key: str, charge_id: str, card_id: str
    ) -> tuple[IdempotencyRecord | None, CardSnapshot | None]:
        """What `get_idempotency` answers, and the saved card `card_id` read in the same
        request (strongly consistent; None: never seen), for CardRules.check_snapshot."""
        ...

    def transition(self, current: Charge, updated: Charge, entries: list[HistoryEntry]) -> Charge:
        """Replace `current` by `updated` if its status and version are still those read
        (StaleStateError otherwise), appending the history entries in the same write."""
        ...

    def payer(self, charge: Charge) -> Payer:
        """The payer facts of a charge (its return links): the charge's own when it has them,
        else those kept with its invoice (one read; only the 3-D Secure return asks)."""
        ...

    def due_charge_ids(self, shard: int, now: datetime, limit: int) -> list[str]:
        """Ids due for a reconciler check in one shard."""
        ...

    def search(
        self, listing: Listing, limit: int, after: str | None
    ) -> tuple[list[Charge], str | None]:
        """Up to `limit` charges of one index partition, newest first (one Query, one
        BatchGetItem), and the position after them (None at the end). `after` is a position
        this method returned for the same listing; a ValidationError ("cursor") if it is not."""
        ...


class ChargeHistory(Protocol):
    """A charge and its append-only history (the operator's views and actions)."""

    def get(self, charge_id: str) -> Charge | None:
        """Read a charge (strongly consistent)."""
        ...

    def history(self, charge_id: str) -> list[HistoryEntry]:
        """Every transition of a charge, oldest first."""
        ...


class Telemetry(Protocol):
    """Logs and metrics of business outcomes, kept out of the use cases' way."""

    def bind_charge(self, charge: Charge) -> None:
        """Attach the charge id to every later log line of this invocation."""
        ...

    def transitioned(self, charge: Charge, previous: ChargeStatus | None, source: Source) -> None:
        """A charge reached a new status."""
        ...

    def outcome(self, charge: Charge) -> None:
        """A write settled the charge in its current status."""
        ...

    def gateway_failure(self, charge: Charge, error: GatewayError) -> None:
        """ePay failed in a way an operator may need to know about."""
        ...


@dataclass(frozen=True)
class CardSnapshot:
    """What CardRules need of a saved card, read by a store alongside other items."""

    account_id: str
    removed: bool


class CardRules(Protocol):
    """What charges and subscriptions may charge (payments.cards.service.CardService.check)."""

    def check(self, account_id: str, card_id: str) -> None:
        """Raise CardRemovedError (a card known to be removed) or CardAccountMismatchError
        (saved under another account); a card never seen passes."""
        ...

    def check_snapshot(self, account_id: str, card: CardSnapshot | None) -> None:
        """The rules of `check` on a card read already (None: never seen)."""
        ...
