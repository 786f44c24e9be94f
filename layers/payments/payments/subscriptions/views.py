"""A subscription as the API shows it."""

from __future__ import annotations

from typing import Any

from payments.shared.clock import iso
from payments.shared.fields import mask_card_id
from payments.subscriptions.model import CHARGEABLE, Subscription

# --- resources ---


def subscription_resource(sub: Subscription) -> dict[str, Any]:
    """The public representation (card id masked)."""
    scheduled = sub.status in CHARGEABLE and sub.renew_at is not None
    return {
        "id": sub.id,
        "status": sub.status.value,
        "accountId": sub.account_id,
        "cardId": mask_card_id(sub.card_id),
        "amount": sub.amount,
        "nextAmount": sub.pending_amount,
        "currency": sub.currency,
        "description": sub.description,
        "interval": {"unit": sub.interval.unit.value, "count": sub.interval.count},
        "startAt": iso(sub.anchor),
        "currentCycle": sub.cycle,
        "currentPeriodStart": iso(sub.due_at()),
        "currentPeriodEnd": iso(sub.due_at(sub.cycle + 1)),
        "nextChargeAt": iso(max(sub.renew_at, sub.due_at()))
        if scheduled and sub.renew_at
        else None,
        "attempt": sub.attempt,
        "pastDueReason": sub.past_due_reason.value if sub.past_due_reason else None,
        "paidCycles": sub.paid_cycles,
        # The charge of the latest attempt that made one (paid, declined or still pending), and
        # every renewal charge of the subscription (GET /charges, a relative link).
        "lastChargeId": sub.last_charge_id,
        "charges": f"/charges?subscriptionId={sub.id}",
        "email": sub.payer.email,
        "phone": sub.payer.phone,
        "backLink": sub.payer.back_link,
        "failureBackLink": sub.payer.failure_back_link,
        "createdAt": iso(sub.created_at),
        "updatedAt": iso(sub.updated_at),
        "pausedAt": iso(sub.paused_at) if sub.paused_at else None,
        "canceledAt": iso(sub.canceled_at) if sub.canceled_at else None,
        "cancelReason": sub.cancel_reason,
    }
