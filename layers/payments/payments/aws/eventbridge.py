"""DomainEvents on an EventBridge bus (boto3 client injected).

PutEvents takes at most ten entries and 256 KB a call (entry sizes counted as EventBridge counts
them: 14 bytes for Time, the UTF-8 bytes of Source, DetailType and Detail). It answers
FailedEntryCount and one `Entries[i]` per request entry, in request order, with `ErrorCode` and
`ErrorMessage` on those it refused: a call can succeed for some entries and not for others.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payments.errors import EventPublishError
from payments.shared.events import DomainEvent, PublishFailure

EVENT_SOURCE = "payments"
MAX_ENTRIES_PER_CALL = 10  # PutEvents' limit
MAX_BYTES_PER_CALL = 256 * 1024  # PutEvents' limit on the entries' total size (less than this)
_TIME_BYTES = 14  # what EventBridge counts for an entry's Time

Entry = dict[str, Any]


class EventBridgeEvents:
    """PutEvents in calls of at most ten entries and 256 KB; `source` is the events' `source`,
    `detail-type` their type."""

    def __init__(self, client: Any, bus_name: str, source: str = EVENT_SOURCE) -> None:
        self._client = client
        self._bus = bus_name
        self._source = source

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Publish every event (all the calls they need are made), or raise the EventPublishError
        of the first one not taken."""
        failure = self.publish_groups([events]).get(0)
        if failure is not None:
            raise failure.error

    def publish_groups(self, groups: Sequence[Sequence[DomainEvent]]) -> dict[int, PublishFailure]:
        """Publish several independent groups of events (a stream record's each) in as few
        PutEvents calls as the limits allow, a group possibly split over two calls. Every call is
        made whatever an earlier one's fate. The groups not wholly taken, by index (none: all
        published); a group whose event cannot be serialised fails alone, unsent."""
        failures: dict[int, PublishFailure] = {}
        owners: list[tuple[int, DomainEvent]] = []
        entries: list[Entry] = []
        for index, group in enumerate(groups):
            try:
                built = [self._entry(event) for event in group]
            except (TypeError, ValueError) as exc:  # data jsonutil will not write (a float)
                error = EventPublishError(
                    f"an event could not be serialised ({type(exc).__name__})"
                )
                error.__cause__ = exc
                failures[index] = PublishFailure(tuple(group), error)
                continue
            owners.extend((index, event) for event in group)
            entries.extend(built)
        for chunk in chunked(entries):
            try:
                refused = self._put([entries[i] for i in chunk])
            except EventPublishError as exc:  # the call failed: none of its entries is known
                refused = [(position, exc) for position in range(len(chunk))]
            for position, error in refused:
                index, event = owners[chunk[position]]
                known = failures.get(index)
                failures[index] = (
                    PublishFailure((event,), error)
                    if known is None
                    else PublishFailure((*known.refused, event), known.error)
                )
        return failures

    def _entry(self, event: DomainEvent) -> Entry:
        return {
            "Source": self._source,
            "DetailType": event.type,
            "Detail": event.detail(),
            "EventBusName": self._bus,
            "Time": event.occurred_at,
        }

    def _put(self, entries: list[Entry]) -> list[tuple[int, EventPublishError]]:
        """One PutEvents call; the positions of the entries it refused, each with its error.
        Raises EventPublishError when the call itself failed."""
        try:
            answer = self._client.put_events(Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            raise EventPublishError(
                f"EventBridge refused the events ({type(exc).__name__})"
            ) from exc
        failed = int(answer.get("FailedEntryCount") or 0)
        if not failed:
            return []
        results = answer.get("Entries")
        if isinstance(results, list) and len(results) == len(entries):
            refused = [
                (
                    position,
                    EventPublishError(f"EventBridge refused the event ({result['ErrorCode']})"),
                )
                for position, result in enumerate(results)
                if isinstance(result, dict) and result.get("ErrorCode")
            ]
            if refused:
                return refused
        # FailedEntryCount without entries naming which: none can be counted as published.
        error = EventPublishError(f"EventBridge refused {failed} of {len(entries)} events")
        return [(position, error) for position in range(len(entries))]


def chunked(entries: Sequence[Entry]) -> Iterator[range]:
    """The positions of `entries` split, in order, into PutEvents calls: at most ten entries and
    less than 256 KB each (an entry that alone is larger goes alone, for EventBridge to refuse)."""
    start, size = 0, 0
    for position, entry in enumerate(entries):
        entry_size = entry_bytes(entry)
        full = position - start == MAX_ENTRIES_PER_CALL or size + entry_size >= MAX_BYTES_PER_CALL
        if position > start and full:
            yield range(start, position)
            start, size = position, 0
        size += entry_size
    if start < len(entries):
        yield range(start, len(entries))


def entry_bytes(entry: Entry) -> int:
    """An entry's size as EventBridge counts it against the call's 256 KB."""
    size = _TIME_BYTES if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(key) or "").encode())
    return size  # entries carry no Resources (each would count its bytes too)
