"""charge.refund.* events: a refund's outcome, told from the table's stream like charge.*."""

from __future__ import annotations

from payments.refunds.model import Refund, RefundStatus
from payments.refunds.views import refund_resource
from payments.shared.events import DomainEvent

REFUND_SUCCEEDED = "charge.refund.succeeded"
REFUND_FAILED = "charge.refund.failed"
_KINDS = {RefundStatus.SUCCEEDED: REFUND_SUCCEEDED, RefundStatus.FAILED: REFUND_FAILED}


def refund_event_from_change(previous_status: str | None, refund: Refund) -> DomainEvent | None:
    """The event of one stored change of a refund: SUCCEEDED and FAILED are told once each
    (the id `<type>:<refund id>` repeats on a redelivery); other writes tell nothing."""
    kind = _KINDS.get(refund.status)
    if kind is None or previous_status == refund.status.value:
        return None
    return DomainEvent(f"{kind}:{refund.id}", kind, refund.updated_at, refund_resource(refund))
