"""DomainEvents on an EventBridge bus (boto3 client injected)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payments.errors import EventPublishError
from payments.shared.events import DomainEvent

EVENT_SOURCE = "payments"
MAX_ENTRIES_PER_CALL = 10  # PutEvents' limit


class EventBridgeEvents:
    """PutEvents in batches of ten; `source` is the events' `source`, `detail-type` their type."""

    def __init__(self, client: Any, bus_name: str, source: str = EVENT_SOURCE) -> None:
        self._client = client
        self._bus = bus_name
        self._source = source

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Publish every event, or raise EventPublishError naming how many were refused."""
        for start in range(0, len(events), MAX_ENTRIES_PER_CALL):
            chunk = events[start : start + MAX_ENTRIES_PER_CALL]
            entries = [
                {
                    "Source": self._source,
                    "DetailType": event.type,
                    "Detail": event.detail(),
                    "EventBusName": self._bus,
                    "Time": event.occurred_at,
                }
                for event in chunk
            ]
            try:
                answer = self._client.put_events(Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                raise EventPublishError(
                    f"EventBridge refused the events ({type(exc).__name__})"
                ) from exc
            failed = int(answer.get("FailedEntryCount") or 0)
            if failed:
                raise EventPublishError(f"EventBridge refused {failed} of {len(chunk)} events")
