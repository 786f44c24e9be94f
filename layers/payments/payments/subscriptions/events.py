"""subscription.* events: what happened to a subscription, told to the merchant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from payments.shared.events import DomainEvent
from payments.subscriptions.model import Subscription

SUBSCRIPTION_RENEWED = "subscription.renewed"
SUBSCRIPTION_PAST_DUE = "subscription.past_due"
SUBSCRIPTION_CANCELED = "subscription.canceled"


def _event(kind: str, event_id: str, sub: Subscription, now: datetime, **data: Any) -> DomainEvent:
    base: dict[str, Any] = {
        "subscriptionId": sub.id,
        "accountId": sub.account_id,
        "status": sub.status.value,
        "amount": sub.amount,
        "currency": sub.currency,
    }
    return DomainEvent(event_id, kind, now, {**base, **data})
