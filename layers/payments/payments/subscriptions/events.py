"""subscription.* events: what happened to a subscription, told to the merchant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from payments.shared.events import DomainEvent
from payments.subscriptions.model import Subscription, SubscriptionStatus

SUBSCRIPTION_RENEWED = "subscription.renewed"
SUBSCRIPTION_PAST_DUE = "subscription.past_due"
SUBSCRIPTION_CANCELED = "subscription.canceled"
# Why a subscription was cancelled: the merchant asked (the API), or the retries ran out.
CANCEL_REQUESTED = "requested"


def subscription_event_from_change(
    previous_status: str | None, sub: Subscription
) -> DomainEvent | None:
    """The event of one stored change of a subscription item (the outbox: the table's stream).

    Only what the subscriptions API does is told here, from the write itself: a merchant's cancel.
    What a renewal does (renewed, past due, cancelled unpaid) the renewal worker tells from its
    cycle claim. Redeliveries of the same change give the same event id.
    """
    if (
        sub.status is not SubscriptionStatus.CANCELLED
        or previous_status == SubscriptionStatus.CANCELLED.value
        or sub.cancel_reason != CANCEL_REQUESTED
    ):
        return None
    return _event(
        SUBSCRIPTION_CANCELED,
        f"{SUBSCRIPTION_CANCELED}:{sub.id}",
        sub,
        sub.canceled_at or sub.updated_at,
        reason=CANCEL_REQUESTED,
        cycle=sub.cycle,
    )


def _event(kind: str, event_id: str, sub: Subscription, now: datetime, **data: Any) -> DomainEvent:
    base: dict[str, Any] = {
        "subscriptionId": sub.id,
        "accountId": sub.account_id,
        "status": sub.status.value,
        "amount": sub.amount,
        "currency": sub.currency,
    }
    return DomainEvent(event_id, kind, now, {**base, **data})
