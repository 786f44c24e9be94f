"""Renewal worker: charges each SQS message's cycle once; failed records are retried alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from payments import bootstrap
from payments.aws.batch import BatchResponse, Record, process_sqs
from payments.aws.renewal_telemetry import renewal_handled
from payments.observability import logger, metrics
from payments.shared.deadline import Deadline
from payments.subscriptions.model import parse_renewal_message

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# One charge (token, auth, capture) fits well inside this; the rest of a batch waits for the next
# delivery rather than risk being cut off mid-charge (an UNKNOWN outcome the reconciler settles).
PER_MESSAGE_SECONDS = 25.0
SAFETY_SECONDS = 2.0

_context: list[LambdaContext] = []


class OutOfTimeError(Exception):
    """Not enough of the invocation left to charge another card; SQS redelivers the record."""


def record_handler(record: Record) -> str:
    """One renewal message: charge the cycle's attempt once (raising fails only this record)."""
    message = parse_renewal_message(str(record.get("body") or ""))
    remaining = _context[0].get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS
    if remaining < PER_MESSAGE_SECONDS:
        raise OutOfTimeError("too little time left in this invocation")
    result = bootstrap.renewals().renew(message, Deadline.after(PER_MESSAGE_SECONDS))
    renewal_handled(message.subscription_id, message.cycle, message.attempt, result.outcome)
    return result.outcome


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> BatchResponse:
    """SQS entry point with partial batch failures (ReportBatchItemFailures). A batch whose every
    record failed is answered the same way, so SQS retries exactly those records."""
    _context[:] = [context]
    return process_sqs(event, record_handler)
