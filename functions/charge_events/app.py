"""Domain events from the table's stream (the outbox): each charge status change -> its charge.*
event, each refund outcome -> charge.refund.*, each subscription change the API made -> its
subscription.* event, on the bus. A record
that could not be published fails alone (ReportBatchItemFailures); Lambda retries from it, and the
deterministic ids make the repeats dedupable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import bootstrap
from payments.aws.batch import BatchResponse, Record, process_stream
from payments.aws.charge_stream import (
    charge_change_from_stream,
    refund_change_from_stream,
    subscription_change_from_stream,
)
from payments.aws.telemetry import event_publish_failed
from payments.charges.events import charge_event_from_change
from payments.errors import PaymentsError
from payments.observability import logger, metrics
from payments.refunds.events import refund_event_from_change
from payments.shared.events import DomainEvent
from payments.subscriptions.events import subscription_event_from_change


def _event_of(change: Mapping[str, Any]) -> DomainEvent | None:
    """The event one stored change tells, if any."""
    charge = charge_change_from_stream(change)
    if charge is not None:
        page_url = bootstrap.page_url(charge.charge)
        return charge_event_from_change(charge.previous_status, charge.charge, page_url)
    sub = subscription_change_from_stream(change)
    if sub is not None:
        return subscription_event_from_change(sub.previous_status, sub.subscription)
    refund = refund_change_from_stream(change)
    if refund is not None:
        return refund_event_from_change(refund.previous_status, refund.refund)
    return None


def record_handler(record: Record) -> str:
    """Publish the event of one item change (raising fails this record only)."""
    event = _event_of(record.get("dynamodb") or {})
    if event is None:
        return "skipped"
    try:
        bootstrap.events().publish([event])
    except PaymentsError as exc:
        event_publish_failed(event, exc)
        raise
    logger.info("charge event published", extra={"event_id": event.id, "event_type": event.type})
    return event.id


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> BatchResponse:
    """DynamoDB stream entry point with partial batch failures (ReportBatchItemFailures). A batch
    whose every record failed is answered the same way, so Lambda bisects and retries from the
    first failed record rather than treating it as a crash."""
    return process_stream(event, record_handler)
