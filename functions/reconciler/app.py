"""Scheduled reconciler: settles every charge, refund and card setup due for a check from ePay's
status API."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from payments import bootstrap
from payments.observability import logger, metrics
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
    summary["setups"] = setups.checked
    logger.info(
        "reconciliation run",
        extra={**summary, "refund_checks": {k.value: v for k, v in refunds.checked.items() if v}},
    )
    metrics.add_metric(name="ReconcilerChecked", unit=MetricUnit.Count, value=report.checked)
    metrics.add_metric(
        name="RefundReconcilerChecked", unit=MetricUnit.Count, value=summary["refunds"]
    )
    metrics.add_metric(name="SetupReconcilerChecked", unit=MetricUnit.Count, value=setups.checked)
    return summary
