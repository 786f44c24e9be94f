"""Partial batch responses for SQS and DynamoDB stream invocations (ReportBatchItemFailures).

Each record is handled alone: one that raises is logged and reported in `batchItemFailures`, so
Lambda retries it (SQS: that message; a stream: from that record on) and the others are not
repeated needlessly. Powertools' batch utility does the same, but importing it costs about 70 ms
of every cold start (asyncio and every event data class, docs/decisions.md); this is the part the
two consumers use.

`publish_stream` is the outbox's variant: each record's events are built alone, then the whole
batch's events are published together (EventBridge: ten to a PutEvents call, not a call per
record), and a record fails when its events could not be built or any of them was not taken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from payments.errors import PaymentsError
from payments.observability import logger
from payments.shared.events import PublishFailure

if TYPE_CHECKING:
    from payments.shared.events import DomainEvent, DomainEvents

Record = Mapping[str, Any]
BatchResponse = dict[str, list[dict[str, str]]]


def process_sqs(event: Mapping[str, Any], handle: Callable[[Record], object]) -> BatchResponse:
    """Handle every SQS record; failures are identified by messageId."""
    return _process(event, handle, lambda record: str(record["messageId"]))


def process_stream(event: Mapping[str, Any], handle: Callable[[Record], object]) -> BatchResponse:
    """Handle every DynamoDB stream record; failures are identified by sequence number."""
    return _process(event, handle, _sequence_number)


def _process(
    event: Mapping[str, Any], handle: Callable[[Record], object], identify: Callable[[Record], str]
) -> BatchResponse:
    failures: list[dict[str, str]] = []
    for record in event.get("Records") or []:
        try:
            handle(record)
        except Exception as exc:
            item = identify(record)
            logger.exception("record failed", extra={"item": item, "error": type(exc).__name__})
            failures.append({"itemIdentifier": item})
    return {"batchItemFailures": failures}


def publish_stream(
    event: Mapping[str, Any],
    events_of: Callable[[Record], Sequence[DomainEvent]],
    bus: Callable[[], DomainEvents],
) -> tuple[BatchResponse, list[str]]:
    """Publish the events of every DynamoDB stream record (`events_of`: a record's events, none
    to skip it) on `bus()` (asked for only when there is something to publish), in as few calls
    as it allows; the batch response and the ids of the events published.

    A record fails, is logged ("record failed") and reported by sequence number when its events
    could not be built, or when any of them was not published ("domain event not published"
    names the first). Records after a failed one are still published: Lambda retries from the
    lowest failed sequence number, so they will be published again, with the same ids (consumers
    dedupe on them), as when each record was published alone."""
    records = list(event.get("Records") or [])
    failed: set[int] = set()
    groups: list[Sequence[DomainEvent]] = []
    owners: list[int] = []  # the record position of each group
    for position, record in enumerate(records):
        try:
            events = events_of(record)
        except Exception as exc:
            item = _sequence_number(record)
            logger.exception("record failed", extra={"item": item, "error": type(exc).__name__})
            failed.add(position)
            continue
        if events:
            groups.append(events)
            owners.append(position)
    failures = _publish_groups(bus, groups) if groups else {}
    published: list[str] = []
    for index, group in enumerate(groups):
        failure = failures.get(index)
        if failure is None:
            published.extend(e.id for e in group)
            continue
        from payments.aws.telemetry import event_publish_failed

        refused = {e.id for e in failure.refused}
        published.extend(e.id for e in group if e.id not in refused)
        event_publish_failed(failure.refused[0], failure.error)
        item = _sequence_number(records[owners[index]])
        logger.exception(
            "record failed",
            exc_info=failure.error,
            extra={"item": item, "error": type(failure.error).__name__},
        )
        failed.add(owners[index])
    answer = [{"itemIdentifier": _sequence_number(records[p])} for p in sorted(failed)]
    return {"batchItemFailures": answer}, published


def _publish_groups(
    bus: Callable[[], DomainEvents], groups: Sequence[Sequence[DomainEvent]]
) -> dict[int, PublishFailure]:
    """The groups `bus()` did not take; a bus that cannot be built (its configuration) fails
    every group, as it failed every record when each asked."""
    try:
        port = bus()
    except PaymentsError as exc:
        return {index: PublishFailure(tuple(group), exc) for index, group in enumerate(groups)}
    return port.publish_groups(groups)


def _sequence_number(record: Record) -> str:
    return str(record["dynamodb"]["SequenceNumber"])
