"""Telemetry adapters: the use cases' reports as Powertools logs and EMF metrics.

Every metric name is a literal here (not built from an enum's value), so renaming a status cannot
silently rename a metric an alarm or the dashboard watches (tests/template greps for them).

A charge's status changes are logged once per invocation, not once per write: one
"charge transitioned" line per charge (and source) at the end of the invocation, with every step
it took (`steps`, oldest first, as chains: "created>PROCESSING>AUTHORIZED>CAPTURED"; a step that
does not start where the previous one ended - another path moved the charge in between - starts
a new chain after a space) and the status it ended in (`to_status`). The charge item's history
stays the record; the log is the trail (docs/decisions.md, 2026-12-06, "log bytes per charge").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from payments.charges.declines import DeclineCategory
from payments.charges.model import Charge, ChargeStatus, Source
from payments.errors import GatewayError, PaymentsError
from payments.observability import at_invocation_end, logger, metrics
from payments.shared.events import DomainEvent
from payments.shared.fields import mask_card_id

if TYPE_CHECKING:
    from payments.cards.model import CardSetup
    from payments.charges.inbox_records import PostLinkOutcome

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
CREATED = "created"  # the "from" of a new charge's first step
# Trails kept at once, past which they are logged without waiting for the end of the invocation
# (a bound on memory for a process that runs use cases outside any handler).
_MAX_TRAILS = 1000


def _count_by(name: str, dimension: str, value: str) -> None:
    """One count of `name` with one extra dimension (published with the invocation's metrics,
    in a directive of its own: the invocation's shared metric set has one dimension set)."""
    metrics.add_dimensioned_metric(
        name=name, unit=MetricUnit.Count, value=1, dimensions={dimension: value}
    )


@dataclass
class _Trail:
    """The status changes one invocation made to one charge, from one source."""

    charge_id: str
    invoice_id: str
    source: str
    card: str
    chains: list[list[str]] = field(default_factory=list)
    error_code: str | None = None

    def add(self, previous: str, status: str) -> None:
        """One step; it extends the last chain when it starts where that one ended."""
        if self.chains and self.chains[-1][-1] == previous:
            self.chains[-1].append(status)
        else:
            self.chains.append([previous, status])

    def line(self) -> dict[str, Any]:
        return {
            "charge_id": self.charge_id,
            "invoice_id": self.invoice_id,
            "to_status": self.chains[-1][-1],
            "steps": " ".join(">".join(chain) for chain in self.chains),
            "source": self.source,
            "card": self.card,
            "error_code": self.error_code,
        }


_trails_lock = threading.Lock()
# By the invocation's request id, then by (charge id, source), in the order first changed.
_trails: dict[str, dict[tuple[str, str], _Trail]] = {}


def _request_id() -> str | None:
    """The request id of the invocation this thread runs for (also in the reconciler's pool
    threads in Lambda: inject_lambda_context sets it process-wide); None outside one."""
    value = logger.get_current_keys().get("function_request_id")
    return str(value) if value else None


def log_transitions() -> None:
    """Log this invocation's charge trails, one "charge transitioned" line each (run at the end
    of every invocation by the metrics flush: observability.at_invocation_end)."""
    request_id = _request_id()
    with _trails_lock:
        kept = _trails.pop(request_id, {}) if request_id else {}
    for trail in kept.values():
        _log_trail(trail)


def _log_trail(trail: _Trail) -> None:
    logger.info("charge transitioned", extra=trail.line())


at_invocation_end(log_transitions)


class PowertoolsTelemetry:
    """Telemetry through Powertools Logger (JSON) and Metrics (EMF), one metric per outcome."""

    def bind_charge(self, charge: Charge) -> None:
        """Put the charge id and invoice id on the rest of this invocation's lines (of this
        thread's, off the main thread: the reconciler checks several charges at once). No
        correlation_id: it was the charge id again on every line."""
        if threading.current_thread() is not threading.main_thread():
            logger.thread_safe_append_keys(charge_id=charge.id, invoice_id=charge.invoice_id)
            return
        logger.append_keys(charge_id=charge.id, invoice_id=charge.invoice_id)

    def transitioned(self, charge: Charge, previous: ChargeStatus | None, source: Source) -> None:
        """Add one transition to the charge's trail, logged at the end of the invocation (at
        once outside an invocation); count a finished 3-D Secure step (ThreeDSCompleted)."""
        request_id = _request_id()
        overflow: list[_Trail] = []
        with _trails_lock:
            kept = _trails.setdefault(request_id, {}) if request_id else {}
            trail = kept.get((charge.id, source))
            if trail is None:
                trail = kept[(charge.id, source)] = _Trail(
                    charge.id, charge.invoice_id, source, mask_card_id(charge.card_id)
                )
            trail.add(previous.value if previous else CREATED, charge.status.value)
            trail.error_code = charge.error.code if charge.error else trail.error_code
            if sum(len(k) for k in _trails.values()) > _MAX_TRAILS:
                overflow = [t for k in _trails.values() for t in k.values()]
                _trails.clear()
        if request_id is None:
            _log_trail(trail)
        for kept_trail in overflow:
            _log_trail(kept_trail)
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
        metrics.add_dimensioned_metric(
            name="InvoiceSpaceUsedPercent",
            unit=MetricUnit.Percent,
            value=round(share * 100, 1),
            dimensions={"Terminal": terminal_id},
        )

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
            "duplicate": True if outcome.duplicate else None,  # absent: a first delivery
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
    no answer - a timeout or a broken connection). Published with the invocation's metrics: the
    calls of one operation as one value array, `http_status` an array in the same order, left
    out when every one of them answered 200 (an unusual status explains a latency; 200 does
    not, and a failure has its own "ePay call failed" warning)."""
    metrics.add_dimensioned_metric(
        name="EpayLatency",
        unit=MetricUnit.Milliseconds,
        value=round(elapsed_ms, 1),
        dimensions={"Operation": operation},
        metadata={"http_status": http_status},
        usual={"http_status": 200},
    )
