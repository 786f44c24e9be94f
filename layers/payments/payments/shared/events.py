"""Domain events: one fact with a stable id, and the port they are published through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from payments.shared import jsonutil
from payments.shared.clock import from_iso, iso

if TYPE_CHECKING:
    from payments.errors import PaymentsError


@dataclass(frozen=True)
class DomainEvent:
    """One fact, with a stable id consumers dedupe on."""

    id: str
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]

    def detail(self) -> str:
        """The event as JSON (EventBridge `detail`): id, type, occurredAt and data."""
        return jsonutil.dumps(
            {
                "id": self.id,
                "type": self.type,
                "occurredAt": iso(self.occurred_at),
                "data": dict(self.data),
            }
        )

    def to_json(self) -> str:
        """Serialised for the renewal claim's pending events (the same shape as `detail`)."""
        return self.detail()

    @classmethod
    def from_json(cls, raw: str) -> DomainEvent:
        """Rebuild an event stored with `to_json` (money stays a Decimal)."""
        value = jsonutil.loads(raw)
        return cls(
            id=str(value["id"]),
            type=str(value["type"]),
            occurred_at=from_iso(value["occurredAt"]),
            data=value["data"],
        )


@dataclass(frozen=True)
class PublishFailure:
    """A group of events the bus did not wholly take: those it did not take (all of the group's
    when that cannot be told) and why (the first error met)."""

    refused: tuple[DomainEvent, ...]
    error: PaymentsError


class DomainEvents(Protocol):
    """Where domain events go (an EventBridge bus in the stack)."""

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Publish every event or raise EventPublishError."""
        ...

    def publish_groups(self, groups: Sequence[Sequence[DomainEvent]]) -> dict[int, PublishFailure]:
        """Publish independent groups (a stream record's events each) in as few calls as the bus
        allows, every group tried; the groups not wholly taken, by index."""
        ...


class NullEvents:
    """No bus configured: events are dropped (tests and stacks without EVENT_BUS_NAME)."""

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Drop the events."""

    def publish_groups(self, groups: Sequence[Sequence[DomainEvent]]) -> dict[int, PublishFailure]:
        """Drop every group: none fails."""
        del groups
        return {}
