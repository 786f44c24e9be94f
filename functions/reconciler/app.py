"""Reconciler: settles every charge, refund and card setup due for a check from ePay's status API.

The schedule's tick sends one message per due shard to the reconcile queue (RECONCILE_QUEUE_URL);
each message is one shard's run, so shards are checked side by side. Without a queue the tick
checks every shard itself, in rotation.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from payments import bootstrap
from payments.aws.batch import Record, process_sqs
from payments.charges.reconcile_fanout import UnitKind, parse_unit
from payments.observability import logger, metrics
from payments.shared import deadline

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from payments.refunds.reconciler import RefundReport

_context: list[LambdaContext] = []


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge's scheduled tick, or the reconcile queue's messages (one shard each)."""
    if "Records" in event:
        _context[:] = [context]
        return dict(process_sqs(event, _run_unit))
    fanout = bootstrap.reconcile_fanout()
    if fanout is None:
        return _run_everything(deadline.deadline_from(context))
    # EventBridge's scheduled time names the tick: the same when it is delivered twice.
    tick = fanout.tick(str(event.get("time") or ""))
    units = [f"{unit.kind.value}#{unit.shard}" for unit in tick.units]
    # A tick with nothing due says so only at DEBUG: an idle stack's logs stay empty.
    log = logger.info if units else logger.debug
    log("reconciliation tick", extra={"units": units, "probed": tick.probed})
    return {"enqueued": len(units), "probed": tick.probed}


def _run_unit(record: Record) -> str:
    """One shard's run (raising fails only this message, which SQS delivers again)."""
    unit = parse_unit(str(record.get("body") or ""))
    budget = deadline.deadline_from(_context[0])
    # The shard runs of one tick count at the tick's time, so a minute's sums are that tick's.
    metrics.set_timestamp(unit.tick)
    summary: dict[str, Any] = {"kind": unit.kind.value, "shard": unit.shard}
    if unit.kind is UnitKind.CHARGES:
        report = bootstrap.reconciler().run_shard(unit.shard, budget)
        summary |= asdict(report)
        _charge_metrics(report.checked, report.due, report.oldest_due_seconds)
        busy = report.due > 0
    elif unit.kind is UnitKind.REFUNDS:
        summary |= _refund_metrics(bootstrap.refund_reconciler().run_shard(unit.shard, budget))
        busy = summary["refunds"] > 0
    else:
        setups = bootstrap.setup_reconciler().run_shard(unit.shard, budget).checked
        metrics.add_metric(name="SetupReconcilerChecked", unit=MetricUnit.Count, value=setups)
        summary["setups"] = setups
        busy = setups > 0
    (logger.info if busy else logger.debug)("reconciliation run", extra=summary)
    metrics.flush_metrics()
    return unit.kind.value


def _run_everything(budget: deadline.Deadline) -> dict[str, Any]:
    """Every shard of every kind in this invocation (no reconcile queue)."""
    report = bootstrap.reconciler().run(budget)
    refunds = bootstrap.refund_reconciler().run(budget)
    setups = bootstrap.setup_reconciler().run(budget)
    summary: dict[str, Any] = asdict(report)
    summary |= _refund_metrics(refunds)
    summary["setups"] = setups.checked
    busy = report.due or summary["refunds"] or setups.checked
    (logger.info if busy else logger.debug)("reconciliation run", extra=summary)
    # Every run records its counts and the backlog (zeros included): the dashboard shows a
    # reconciler that runs, and a growing ReconcilerOldestDueSeconds one that falls behind.
    _charge_metrics(report.checked, report.due, report.oldest_due_seconds)
    metrics.add_metric(name="SetupReconcilerChecked", unit=MetricUnit.Count, value=setups.checked)
    return summary


def _charge_metrics(checked: int, due: int, oldest_due_seconds: int) -> None:
    metrics.add_metric(name="ReconcilerChecked", unit=MetricUnit.Count, value=checked)
    metrics.add_metric(name="ReconcilerDueBacklog", unit=MetricUnit.Count, value=due)
    metrics.add_metric(
        name="ReconcilerOldestDueSeconds", unit=MetricUnit.Seconds, value=oldest_due_seconds
    )


def _refund_metrics(refunds: RefundReport) -> dict[str, Any]:
    from payments.refunds.reconciler import RefundCheck

    checked = sum(refunds.checked.values())
    needs_review = refunds.checked[RefundCheck.NEEDS_REVIEW]
    metrics.add_metric(name="RefundReconcilerChecked", unit=MetricUnit.Count, value=checked)
    metrics.add_metric(name="RefundNeedsReview", unit=MetricUnit.Count, value=needs_review)
    return {
        "refunds": checked,
        "refunds_needs_review": needs_review,
        "refund_checks": {k.value: v for k, v in refunds.checked.items() if v},
    }
