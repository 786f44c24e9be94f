"""Telemetry adapters: the use cases' reports as Powertools logs and EMF metrics.

Every metric name is a literal here (not built from an enum's value), so renaming a status cannot
silently rename a metric an alarm or the dashboard watches (tests/template greps for them).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from payments.charges.declines import DeclineCategory
from payments.charges.model import Charge, ChargeStatus, Source
from payments.errors import GatewayError, PaymentsError
from payments.observability import logger, metrics
from payments.shared.events import DomainEvent
from payments.shared.fields import mask_card_id

if TYPE_CHECKING:
    from payments.cards.model import CardSetup
    from payments.charges.inbox_records import PostLinkOutcome

NAMESPACE = "Payments"
SERVICE = "payments"

_METRIC_NAMES = {
    ChargeStatus.AUTHORIZED: "ChargeAuthorized",
    ChargeStatus.CAPTURED: "ChargeCaptured",
    ChargeStatus.REQUIRES_3DS: "ChargeRequires3DS",
    ChargeStatus.DECLINED: "ChargeDeclined",
    ChargeStatus.UNKNOWN: "ChargeUnknown",
    ChargeStatus.FAILED: "ChargeFailed",
    ChargeStatus.EXPIRED: "ChargeExpired",
    ChargeStatus.NEEDS_REVIEW: "ChargeNeedsReview",
    ChargeStatus.CANCELLED: "ChargeCancelled",
}
# Where a 3-D Secure step can end, and the states that mean the customer got through it.
_THREE_DS_FROM = frozenset({ChargeStatus.REQUIRES_3DS, ChargeStatus.UNKNOWN})
_PAID = frozenset({ChargeStatus.AUTHORIZED, ChargeStatus.CAPTURED})
_DECLINE_CATEGORIES = frozenset(c.value for c in DeclineCategory)


def _count_by(name: str, dimension: str, value: str) -> None:
    """One count of `name` with one extra dimension (its own EMF blob: the invocation's shared
    metric set has one dimension set)."""
    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE, dimension: value},
    ):
        pass


class PowertoolsTelemetry:
    """Telemetry through Powertools Logger (JSON) and Metrics (EMF), one metric per outcome."""

    def bind_charge(self, charge: Charge) -> None:
        """Make the charge id the correlation id of the rest of this invocation's logs (of this
        thread's, off the main thread: the reconciler checks several charges at once)."""
        if threading.current_thread() is not threading.main_thread():
            logger.thread_safe_append_keys(
                correlation_id=charge.id, charge_id=charge.id, invoice_id=charge.invoice_id
            )
            return
        logger.set_correlation_id(charge.id)
        logger.append_keys(charge_id=charge.id, invoice_id=charge.invoice_id)

    def transitioned(self, charge: Charge, previous: ChargeStatus | None, source: Source) -> None:
        """Log one transition; count a finished 3-D Secure step (ThreeDSCompleted)."""
        logger.info(
            "charge transitioned",
            extra={
                "from_status": previous.value if previous else None,
                "to_status": charge.status.value,
                "source": source,
                "card": mask_card_id(charge.card_id),
                "error_code": charge.error.code if charge.error else None,
            },
        )
        if previous in _THREE_DS_FROM and charge.status in _PAID and charge.three_ds is not None:
            # The customer finished 3-D Secure and the payment went through (started:
            # ChargeRequires3DS). Counted on the transition, so a later capture is not.
            metrics.add_metric(name="ThreeDSCompleted", unit=MetricUnit.Count, value=1)

    def outcome(self, charge: Charge) -> None:
        """Count the status a charge settled in after one write (one metric per outcome), and a
        decline once more by its category (ChargeDeclinedByCategory, dimension Category)."""
        name = _METRIC_NAMES.get(charge.status)
        if name is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        if charge.status is ChargeStatus.DECLINED:
            category = charge.error.category if charge.error else DeclineCategory.OTHER
            if category not in _DECLINE_CATEGORIES:  # a bounded dimension, whatever comes
                category = DeclineCategory.OTHER
            _count_by("ChargeDeclinedByCategory", "Category", str(category))

    def gateway_failure(self, charge: Charge, error: GatewayError) -> None:
        """Log an ePay failure by its facts only (operation, class, HTTP status)."""
        logger.warning(
            "ePay call failed",
            extra={
                "operation": error.operation,
                "error": type(error).__name__,
                "gateway_http_status": error.gateway_http_status,
                "status": charge.status.value,
            },
        )
        metrics.add_metric(name="GatewayFailure", unit=MetricUnit.Count, value=1)


class PowertoolsInvoiceTelemetry:
    """The invoice suffix space per terminal: `InvoiceSpaceUsedPercent` (the alarm's metric,
    dimension Terminal) and `InvoiceSpaceExhausted`."""

    def space_used(self, terminal_id: str, share: float) -> None:
        """Report the reserved share of the terminal's ring just used."""
        with single_metric(
            name="InvoiceSpaceUsedPercent",
            unit=MetricUnit.Percent,
            value=round(share * 100, 1),
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE, "Terminal": terminal_id},
        ):
            pass

    def space_exhausted(self, terminal_id: str) -> None:
        """Every ring of the terminal is full: log it (the charge is answered 503) and count."""
        logger.error("invoice space exhausted", extra={"terminal": terminal_id})
        metrics.add_metric(name="InvoiceSpaceExhausted", unit=MetricUnit.Count, value=1)


_VERDICT_METRICS = {
    "received": "PostLinkReceived",
    "malformed": "PostLinkMalformed",
    "forged": "PostLinkForged",
    "unknown_invoice": "PostLinkUnknownInvoice",
    "settled": "PostLinkSettled",
    "pending": "PostLinkPending",
    "deferred": "PostLinkDeferred",
}


class PowertoolsPostLinkTelemetry:
    """postLink verdicts as log lines and one metric per verdict (plus PostLinkDuplicate).

    A forged notification is a security event: a warning with `security: true`, the field names
    that did not match and the caller's IP, never the payload or its secret_hash.
    """

    def handled(self, outcome: PostLinkOutcome) -> None:
        """Log and count one delivery's verdict (PostLinkSettled, PostLinkForged, ...)."""
        # Imported here so that only the postLink function loads the postLink module.
        from payments.charges.inbox_records import Verdict

        if outcome.charge_id:
            logger.append_keys(charge_id=outcome.charge_id)
        extra = {
            "verdict": outcome.verdict.value,
            "route": outcome.route.value,
            "duplicate": outcome.duplicate,
            "invoice_id": outcome.invoice_id,
            "status": outcome.status.value if outcome.status else None,
            "detail": outcome.detail,
        }
        if outcome.verdict is Verdict.FORGED:
            logger.warning(
                "postLink notification failed verification",
                extra={
                    **extra,
                    "security": True,
                    "mismatched": list(outcome.mismatched),
                    "source_ip": outcome.source_ip,
                },
            )
        elif outcome.verdict in (Verdict.MALFORMED, Verdict.UNKNOWN_INVOICE, Verdict.DEFERRED):
            logger.warning(
                "postLink notification not settled", extra={**extra, "source_ip": outcome.source_ip}
            )
        else:
            logger.info("postLink notification handled", extra=extra)
        name = _VERDICT_METRICS.get(outcome.verdict)
        if name is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        if outcome.duplicate:
            metrics.add_metric(name="PostLinkDuplicate", unit=MetricUnit.Count, value=1)


_SETUP_METRICS = {
    "SUCCEEDED": "CardSetupSucceeded",
    "FAILED": "CardSetupFailed",
    "EXPIRED": "CardSetupExpired",
}


class PowertoolsSetupTelemetry:
    """Card setups' outcomes: one log line and one metric per final status."""

    def setup_finished(self, setup: CardSetup) -> None:
        """A setup reached SUCCEEDED, FAILED or EXPIRED."""
        logger.info(
            "card setup finished",
            extra={
                "setup_id": setup.id,
                "status": setup.status.value,
                "mode": setup.mode.value,
                "charge_id": setup.charge_id,
                "card": mask_card_id(setup.card_id) if setup.card_id else None,
                "error_code": setup.error.code if setup.error else None,
            },
        )
        name = _SETUP_METRICS.get(setup.status.value)
        if name is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def event_publish_failed(event: DomainEvent, error: PaymentsError) -> None:
    """A domain event did not reach the bus after its fact was stored (alarmable metric)."""
    logger.error(
        "domain event not published",
        extra={"event_id": event.id, "event_type": event.type, "error": type(error).__name__},
    )
    metrics.add_metric(name="EventPublishFailed", unit=MetricUnit.Count, value=1)


def epay_call(operation: str, elapsed_ms: float, http_status: int | None) -> None:
    """One ePay HTTP call's time (the client's `on_call`): `EpayLatency` in milliseconds with
    dimension Operation (token, auth, status, capture, ...), the HTTP status as metadata (None:
    no answer - a timeout or a broken connection)."""
    with single_metric(
        name="EpayLatency",
        unit=MetricUnit.Milliseconds,
        value=round(elapsed_ms, 1),
        namespace=NAMESPACE,
        default_dimensions={"service": SERVICE, "Operation": operation},
    ) as metric:
        metric.add_metadata(key="http_status", value=http_status)
