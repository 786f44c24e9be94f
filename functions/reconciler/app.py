"""Scheduled reconciler: settles every charge, refund and card setup due for a check from ePay's
status API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import bootstrap
from payments.observability import logger, metrics
from payments.refunds.reconciler import RefundCheck
from payments.shared import deadline


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(_event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """EventBridge schedule entry point; the event's content is not used."""
    budget = deadline.deadline_from(context)
    report = bootstrap.reconciler().run(budget)
    refunds = bootstrap.refund_reconciler().run(budget)
    setups = bootstrap.setup_reconciler().run(budget)
    summary = asdict(report)
    summary["refunds"] = sum(refunds.checked.values())
    summary["refunds_needs_review"] = refunds.checked[RefundCheck.NEEDS_REVIEW]
    summary["setups"] = setups.checked
    # A run that found nothing to do says so only at DEBUG: an idle stack's logs stay empty.
    busy = report.due or summary["refunds"] or setups.checked
    log = logger.info if busy else logger.debug
    log(
        "reconciliation run",
        extra={**summary, "refund_checks": {k.value: v for k, v in refunds.checked.items() if v}},
    )
    # Every run records its counts and the backlog (zeros included): the dashboard shows a
    # reconciler that runs, and a growing ReconcilerOldestDueSeconds one that falls behind.
    metrics.add_metric(name="ReconcilerChecked", unit=MetricUnit.Count, value=report.checked)
    metrics.add_metric(name="ReconcilerDueBacklog", unit=MetricUnit.Count, value=report.due)
    metrics.add_metric(
        name="ReconcilerOldestDueSeconds",
        unit=MetricUnit.Seconds,
        value=report.oldest_due_seconds,
    )
    metrics.add_metric(
        name="RefundReconcilerChecked", unit=MetricUnit.Count, value=summary["refunds"]
    )
    metrics.add_metric(
        name="RefundNeedsReview",
        unit=MetricUnit.Count,
        value=summary["refunds_needs_review"],
    )
    metrics.add_metric(name="SetupReconcilerChecked", unit=MetricUnit.Count, value=setups.checked)
    return summary
