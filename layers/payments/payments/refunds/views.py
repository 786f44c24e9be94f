"""A refund as the API and the events show it."""

from __future__ import annotations

from typing import Any

from payments.refunds.model import Refund
from payments.shared.clock import iso


def refund_resource(refund: Refund) -> dict[str, Any]:
    """The public representation of a refund."""
    return {
        "id": refund.id,
        "chargeId": refund.charge_id,
        "amount": refund.amount,
        "currency": refund.currency,
        "status": refund.status.value,
        "reason": refund.reason,
        "metadata": dict(refund.metadata),
        "createdAt": iso(refund.created_at),
        "updatedAt": iso(refund.updated_at),
        "error": None
        if refund.error is None
        else {"code": refund.error.code, "message": refund.error.message},
    }
