"""The refunds domain's ports: its store and what it asks of ePay."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from payments.charges.transitions import Writer
    from payments.refunds.model import Refund
    from payments.shared.deadline import Deadline
    from payments.shared.idempotency import IdempotencyRecord


class RefundStore(Protocol):
    """Refunds beside their charge, their idempotency keys, and the reconciler's index."""

    def get(self, refund_id: str) -> Refund | None:
        """Read a refund (strongly consistent), or None."""
        ...

    def list_for_charge(self, charge_id: str) -> list[Refund]:
        """A charge's refunds, oldest first."""
        ...

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """What a refund's idempotency key created, or None."""
        ...

    def reserving(self, refund: Refund) -> Writer:
        """A charge writer that also writes the new refund and its key, in one transaction
        (DuplicateKeyError "refund_key" when the key was taken meanwhile)."""
        ...

    def settling(self, before: Refund, after: Refund) -> Writer:
        """A charge writer that also replaces the refund, if unchanged since `before` was read."""
        ...

    def update(self, before: Refund, after: Refund) -> Refund:
        """Replace the refund alone, if unchanged since `before` was read (StaleStateError)."""
        ...

    def due(self, shard: int, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(charge id, refund id) of refunds whose check is due, from one shard."""
        ...


class RefundGateway(Protocol):
    """The ePay operations refunds and voids call (payments.epay.client.EpayClient)."""

    def refund(
        self,
        transaction_id: str,
        terminal_id: str,
        amount: Decimal,
        external_id: str,
        deadline: Deadline,
    ) -> None:
        """Refund part or all of a taken transaction; never retried."""
        ...
