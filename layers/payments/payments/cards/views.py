"""Cards and card setups as the API and the events show them.

A card's `id` is shown whole to the merchant (its IAM-signed API and its event bus): it is the
handle a charge names. Logs never carry it (payments.shared.fields.mask_card_id).
"""

from __future__ import annotations

from typing import Any

from payments.cards.model import Card, CardSetup
from payments.shared.clock import iso


def card_resource(card: Card) -> dict[str, Any]:
    """The public representation of a saved card."""
    return {
        "id": card.id,
        "accountId": card.account_id,
        "status": card.status.value,
        "mask": card.mask,
        "type": card.card_type,
        "issuer": card.issuer,
        "source": card.source.value,
        "setupId": card.setup_id,
        "paymentAvailable": card.payment_available,
        "listedAtEpay": card.listed_at_epay,
        "createdAt": iso(card.created_at),
        "updatedAt": iso(card.updated_at),
        "removedAt": iso(card.removed_at) if card.removed_at else None,
    }


def setup_resource(setup: CardSetup, url: str | None) -> dict[str, Any]:
    """The public representation of a card setup; `url` while its page can be opened."""
    return {
        "id": setup.id,
        "status": setup.status.value,
        "accountId": setup.account_id,
        "mode": setup.mode.value,
        "amount": setup.amount,
        "currency": setup.currency,
        "invoiceId": setup.invoice_id,
        "url": url,
        "expiresAt": iso(setup.expires_at),
        "pageOpenedAt": iso(setup.page_served_at) if setup.page_served_at else None,
        "cardId": setup.card_id,
        "cardMask": setup.card_mask,
        "chargeId": setup.charge_id,
        "error": None
        if setup.error is None
        else {"code": setup.error.code, "message": setup.error.message},
        "createdAt": iso(setup.created_at),
        "updatedAt": iso(setup.updated_at),
    }
