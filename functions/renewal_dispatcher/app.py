"""Scheduled renewal dispatcher: enqueues one SQS message per due billing cycle, once."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from payments import bootstrap
from payments.observability import logger, metrics
from payments.shared import deadline

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(_event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """EventBridge schedule entry point; the event's content is not used.

    An empty tick (nothing due) is quiet: no log line above DEBUG and no metric (the metrics
    flush nothing when nothing was added), so an idle stack's log group stays empty.
    """
    report = bootstrap.renewals().dispatch(deadline.deadline_from(context))
    summary = asdict(report)
    if not (report.enqueued or report.skipped):
        logger.debug("renewal dispatch run", extra=summary)
        return summary
    logger.info("renewal dispatch run", extra=summary)
    metrics.add_metric(name="RenewalsEnqueued", unit=MetricUnit.Count, value=report.enqueued)
    metrics.add_metric(name="RenewalsSkipped", unit=MetricUnit.Count, value=report.skipped)
    return summary
