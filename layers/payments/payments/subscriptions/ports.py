"""What subscriptions need from storage, the renewal queue and the charge use case."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from payments.charges.requests import ChargeRequest
from payments.shared.deadline import Deadline
from payments.shared.idempotency import IdempotencyRecord
from payments.subscriptions.model import CycleClaim, RenewalMessage, Subscription

# --- ports ---


class SubscriptionStore(Protocol):
    """What the subscription use cases need from DynamoDB."""

    def create(self, subscription: Subscription) -> None:
        """Write a new subscription, its key and its account listing (DuplicateKeyError)."""
        ...

    def get(self, subscription_id: str) -> Subscription | None:
        """Read a subscription (strongly consistent)."""
        ...

    def get_key(self, key: str) -> IdempotencyRecord | None:
        """Which subscription an Idempotency-Key created."""
        ...

    def list_by_account(
        self, account_id: str, limit: int, after: str | None
    ) -> tuple[list[Subscription], str | None]:
        """One page of an account's subscriptions, oldest first, and the next position."""
        ...

    def save(self, current: Subscription, updated: Subscription) -> Subscription:
        """Replace `current` if its version is still the one read (StaleStateError)."""
        ...

    def due(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        """(id, renewAt) of subscriptions due in one shard of the sparse index."""
        ...

    def lease(
        self, subscription_id: str, seen: datetime, until: datetime, now: datetime
    ) -> Subscription | None:
        """Move renewAt from `seen` to `until` (one conditional write); None if it moved."""
        ...

    def get_claim(self, subscription_id: str, cycle: int, attempt: int) -> CycleClaim | None:
        """The claim on an attempt of a cycle, or None."""
        ...

    def claim(self, subscription: Subscription, claim: CycleClaim) -> None:
        """Write the claim if the subscription is unchanged (StaleStateError) and the claim new
        (DuplicateKeyError)."""
        ...

    def record(
        self, current: Subscription, updated: Subscription, claim: CycleClaim
    ) -> Subscription:
        """Write the attempt's outcome on the claim and the subscription, together."""
        ...

    def events_published(self, claim: CycleClaim) -> None:
        """Forget the claim's pending events (they reached the bus)."""
        ...

    def take_publishing(self, claim: CycleClaim, now: datetime, until: datetime) -> bool:
        """Take over publishing a claim's pending events whose publisher's time ran out."""
        ...


class RenewalQueue(Protocol):
    """The renewal queue (SQS)."""

    def send(self, messages: list[RenewalMessage]) -> None:
        """Enqueue every message (batched) or raise."""
        ...


class ChargeCreator(Protocol):
    """The one use case that charges a card once per key (ChargeService)."""

    def create_charge(
        self, request: ChargeRequest, idempotency_key: str, deadline: Deadline
    ) -> Any:
        """A CreateResult with `.charge`."""
        ...
