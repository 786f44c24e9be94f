"""Renewal telemetry: what one renewal message did, as a log line and one metric per outcome."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from payments.observability import logger, metrics
from payments.subscriptions.model import RenewalOutcome

# One metric per outcome, each name a literal (the dashboard and tests/template look for them).
_RENEWAL_METRICS = {
    RenewalOutcome.PAID: "RenewalPaid",
    RenewalOutcome.DECLINED: "RenewalDeclined",
    RenewalOutcome.PAST_DUE: "RenewalPastDue",
    RenewalOutcome.UNPAID: "RenewalUnpaid",
    RenewalOutcome.CANCELLED: "RenewalCancelled",
    RenewalOutcome.REQUIRES_ACTION: "RenewalRequiresAction",
    RenewalOutcome.PENDING: "RenewalPending",
    RenewalOutcome.OUTAGE: "RenewalOutage",
    RenewalOutcome.DUPLICATE: "RenewalDuplicate",
    RenewalOutcome.STALE: "RenewalStale",
}


def renewal_handled(
    subscription_id: str, cycle: int, attempt: int, outcome: RenewalOutcome
) -> None:
    """Log and count what one renewal message did (ids only, never card data)."""
    logger.info(
        "renewal handled",
        extra={
            "subscription_id": subscription_id,
            "cycle": cycle,
            "attempt": attempt,
            "outcome": outcome,
        },
    )
    name = _RENEWAL_METRICS.get(outcome)
    if name is not None:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
