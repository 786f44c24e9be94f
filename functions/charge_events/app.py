"""Charge events from the table's stream (the outbox): each charge status change -> its charge.*
event on the bus. A record that could not be published fails alone (ReportBatchItemFailures);
Lambda retries from it, and the deterministic ids make the repeats dedupable."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import bootstrap
from payments.aws.batch import BatchResponse, Record, process_stream
from payments.aws.charge_stream import charge_change_from_stream
from payments.aws.telemetry import event_publish_failed
from payments.charges.events import charge_event_from_change
from payments.errors import PaymentsError
from payments.observability import logger, metrics


def record_handler(record: Record) -> str:
    """Publish the event of one charge item change (raising fails this record only)."""
    change = charge_change_from_stream(record.get("dynamodb") or {})
    event = None
    if change is not None:
        page_url = bootstrap.page_url(change.charge)
        event = charge_event_from_change(change.previous_status, change.charge, page_url)
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
