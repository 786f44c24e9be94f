"""A charge as the API and the events show it: plain values in, JSON-ready dicts out.

Nothing here reads a store or a secret: the 3-D Secure page URL arrives as a value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from payments.charges.model import Charge, ChargeStatus, HistoryEntry
from payments.shared.clock import iso
from payments.shared.fields import mask_card_id

if TYPE_CHECKING:
    from payments.charges.inbox_records import InboxEntry, PostLinkOutcome
    from payments.charges.search import ChargePage
    from payments.charges.timeline import Timeline


def next_action(charge: Charge, page_url: str | None) -> dict[str, Any] | None:
    """What the customer must do next: the 3DS redirect of a REQUIRES_3DS charge, else None."""
    if charge.status is not ChargeStatus.REQUIRES_3DS:
        return None
    return {"type": "redirect", "url": page_url} if page_url else {"type": "three_d_secure"}


def error_view(charge: Charge) -> dict[str, str] | None:
    """Why a charge did not succeed, as the API and the events show it."""
    if charge.error is None:
        return None
    return {
        "code": charge.error.code,
        "message": charge.error.message,
        "category": charge.error.category,
    }


def charge_summary(charge: Charge) -> dict[str, Any]:
    """What the API and the events both tell of a charge: invoice, status, money, account, card
    (masked)."""
    return {
        "invoiceId": charge.invoice_id,
        "status": charge.status.value,
        "amount": charge.amount,
        "capturedAmount": charge.captured_amount,
        "refundedAmount": charge.refunded_amount,
        "currency": charge.currency,
        "accountId": charge.account_id,
        "cardId": mask_card_id(charge.card_id),
        "recurrent": charge.recurrent,
    }


def charge_resource(charge: Charge, page_url: str | None = None) -> dict[str, Any]:
    """The public representation of a charge (card id masked, no secrets).

    A REQUIRES_3DS charge's `nextAction` is `{"type": "redirect", "url": ...}` with the URL of
    its 3-D Secure page (`page_url`, from charges.threeds.PageLinks.page_url); a charge stored
    without a page token keeps the bare `{"type": "three_d_secure"}`.
    """
    return {
        "id": charge.id,
        **charge_summary(charge),
        "description": charge.description,
        "capture": charge.capture.value,
        "createdAt": iso(charge.created_at),
        "updatedAt": iso(charge.updated_at),
        "epay": {
            "transactionId": charge.epay.transaction_id,
            "reference": charge.epay.reference,
            "approvalCode": charge.epay.approval_code,
            "cardMask": charge.epay.card_mask,
        },
        "nextAction": next_action(charge, page_url),
        "error": error_view(charge),
    }


def charge_page(page: ChargePage, page_url: Callable[[Charge], str | None]) -> dict[str, Any]:
    """A page of `GET /charges`: each charge as `GET /charges/{chargeId}` shows it (with its 3-D
    Secure page URL from `page_url`), and the next page's cursor (null at the end)."""
    return {
        "data": [charge_resource(charge, page_url(charge)) for charge in page.charges],
        "nextCursor": page.next_cursor,
    }


def history_entry(entry: HistoryEntry) -> dict[str, Any]:
    """One transition as `GET /charges/{chargeId}/history` shows it."""
    return {
        "from": entry.from_status.value if entry.from_status else None,
        "to": entry.to_status.value,
        "source": entry.source.value,
        "at": iso(entry.at),
        "detail": entry.detail,
    }


def postlink_entry(entry: InboxEntry) -> dict[str, Any]:
    """One notification of the charge's invoice: its inbox id, when and where it came, its
    verdict, how often it was delivered, ePay's code and reasonCode (never its secret)."""
    return {
        "inboxId": entry.inbox_id,
        "receivedAt": iso(entry.received_at),
        "route": entry.route.value,
        "verdict": entry.verdict.value,
        "detail": entry.detail,
        "deliveries": entry.deliveries,
        "code": entry.code,
        "reasonCode": entry.reason_code,
    }


def timeline_resource(timeline: Timeline) -> dict[str, Any]:
    """`GET /charges/{chargeId}/history`: transitions and postLinks, each oldest first."""
    return {
        "chargeId": timeline.charge.id,
        "data": [history_entry(entry) for entry in timeline.history],
        "postLinks": [postlink_entry(entry) for entry in timeline.postlinks],
    }


def replay_resource(inbox_id: str, outcome: PostLinkOutcome) -> dict[str, Any]:
    """`POST /postlinks/{inboxId}/replay`: the verdict, and the charge (or card setup) it
    concerned with its status afterwards (null when none)."""
    return {
        "inboxId": inbox_id,
        "verdict": outcome.verdict.value,
        "chargeId": outcome.charge_id,
        "status": outcome.status.value if outcome.status is not None else None,
        "detail": outcome.detail,
    }
