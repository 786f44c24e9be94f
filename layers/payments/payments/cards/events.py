"""card.* events, and the subscription event a removed card causes.

Published from the table's stream like charge.* events (functions/charge_events): the card's
write is the outbox. Ids are deterministic per fact, and carry a digest of the card id rather
than the id itself (event ids reach logs; the card id is in the data, for the merchant).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from payments.cards import views
from payments.cards.model import Card, CardStatus
from payments.shared.events import DomainEvent
from payments.shared.fields import mask_card_id

CARD_SAVED = "card.saved"
CARD_REMOVED = "card.removed"
PAYMENT_METHOD_REMOVED = "subscription.payment_method_removed"


def card_ref(card_id: str) -> str:
    """A stable reference to a card for event ids (never the id itself)."""
    return hashlib.sha256(card_id.encode()).hexdigest()[:24]


def card_event_from_change(previous_status: str | None, card: Card) -> DomainEvent | None:
    """card.saved for a new ACTIVE card, card.removed when a card became REMOVED; else None."""
    if previous_status == card.status.value:
        return None
    if previous_status is None and card.status is CardStatus.ACTIVE:
        kind, at = CARD_SAVED, card.created_at
    elif card.status is CardStatus.REMOVED:
        kind, at = CARD_REMOVED, card.removed_at or card.updated_at
    else:
        return None
    return DomainEvent(f"{kind}:{card_ref(card.id)}", kind, at, views.card_resource(card))


def payment_method_removed(card: Card, subscription_ids: Iterable[str]) -> list[DomainEvent]:
    """One subscription.payment_method_removed per subscription still charging the card: it
    is not cancelled; its next renewal fails as a hard decline until a new card is set."""
    at = card.removed_at or card.updated_at
    return [
        DomainEvent(
            f"{PAYMENT_METHOD_REMOVED}:{sub_id}:{card_ref(card.id)}",
            PAYMENT_METHOD_REMOVED,
            at,
            {
                "subscriptionId": sub_id,
                "accountId": card.account_id,
                "cardId": mask_card_id(card.id),
                "reason": "card_removed",
            },
        )
        for sub_id in subscription_ids
    ]
