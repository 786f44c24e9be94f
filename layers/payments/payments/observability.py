"""Logger and metrics shared by every function; the Telemetry the use cases report to.

Nothing here logs request bodies, tokens, secret_hash, PaReq/PaRes or unmasked card ids.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from payments.errors import GatewayError
from payments.models import Charge, ChargeStatus, mask_card_id

# Named explicitly so the service never depends on an environment read at import time.
logger = Logger(service="payments")
metrics = Metrics(namespace="Payments", service="payments")

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


class PowertoolsTelemetry:
    """Telemetry through Powertools Logger (JSON) and Metrics (EMF), one metric per outcome."""

    def bind_charge(self, charge: Charge) -> None:
        """Make the charge id the correlation id of the rest of this invocation's logs."""
        logger.set_correlation_id(charge.id)
        logger.append_keys(charge_id=charge.id, invoice_id=charge.invoice_id)

    def transitioned(self, charge: Charge, previous: ChargeStatus | None, source: str) -> None:
        """Log one transition."""
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

    def outcome(self, charge: Charge) -> None:
        """Count the status a charge settled in after one write (one metric per outcome)."""
        name = _METRIC_NAMES.get(charge.status)
        if name is not None:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)

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
