"""Domain events: what happened to charges and subscriptions, told to the merchant's systems.

Every event has a deterministic `id` built from the fact it reports (`charge.succeeded:<chargeId>`,
`subscription.renewed:<subscriptionId>#<cycle>`), so a publish that is retried, or repeated after a
crash, carries the same id and consumers can drop the copy. An event is published only by the
writer whose conditional write made the fact true (the winner); losers and replays publish nothing.
`charge.*` events are published from the table's stream (the write itself is the outbox:
`payments.charge_stream` and functions/charge_events), never by the writer in-line.

This module holds the port and the event builders; the EventBridge adapter is
`payments.eventbridge` (boto3 stays out of the use cases).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from payments import jsonutil, web
from payments.models import CaptureMode, Charge, ChargeStatus, from_iso, iso, mask_card_id

S = ChargeStatus

CHARGE_SUCCEEDED = "charge.succeeded"
CHARGE_FAILED = "charge.failed"
CHARGE_REQUIRES_ACTION = "charge.requires_action"
SUBSCRIPTION_RENEWED = "subscription.renewed"
SUBSCRIPTION_PAST_DUE = "subscription.past_due"
SUBSCRIPTION_CANCELED = "subscription.canceled"
EVENT_TYPES = (
    CHARGE_SUCCEEDED,
    CHARGE_FAILED,
    CHARGE_REQUIRES_ACTION,
    SUBSCRIPTION_RENEWED,
    SUBSCRIPTION_PAST_DUE,
    SUBSCRIPTION_CANCELED,
)

# The idempotency key of a renewal charge. It contains a space, which the public API's
# Idempotency-Key header may not (printable ASCII without spaces), so no merchant request can
# ever collide with, replay or pre-empt a renewal's charge.
_RENEWAL_KEY_RE = re.compile(r"^renewal (sub_[0-9a-f]{32})#([0-9]+)(?:#retry([0-9]+))?$")


def renewal_key(subscription_id: str, cycle: int, attempt: int) -> str:
    """The charge idempotency key of one attempt of one billing cycle (`<sub>#<cycle>`)."""
    base = f"renewal {subscription_id}#{cycle}"
    return base if attempt == 0 else f"{base}#retry{attempt}"


def parse_renewal_key(key: str) -> tuple[str, int, int] | None:
    """(subscription id, cycle, attempt) of a renewal charge's key; None for other charges."""
    match = _RENEWAL_KEY_RE.match(key)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3) or 0)


@dataclass(frozen=True)
class DomainEvent:
    """One fact, with a stable id consumers dedupe on."""

    id: str
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]

    def detail(self) -> str:
        """The event as JSON (EventBridge `detail`): id, type, occurredAt and data."""
        return jsonutil.dumps(
            {
                "id": self.id,
                "type": self.type,
                "occurredAt": iso(self.occurred_at),
                "data": dict(self.data),
            }
        )

    def to_json(self) -> str:
        """Serialised for the renewal claim's pending events (the same shape as `detail`)."""
        return self.detail()

    @classmethod
    def from_json(cls, raw: str) -> DomainEvent:
        """Rebuild an event stored with `to_json` (money stays a Decimal)."""
        value = jsonutil.loads(raw)
        return cls(
            id=str(value["id"]),
            type=str(value["type"]),
            occurred_at=from_iso(value["occurredAt"]),
            data=value["data"],
        )


class DomainEvents(Protocol):
    """Where domain events go (an EventBridge bus in the stack)."""

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Publish every event or raise EventPublishError."""
        ...


class NullEvents:
    """No bus configured: events are dropped (tests and stacks without EVENT_BUS_NAME)."""

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Drop the events."""


def charge_event(
    charge: Charge, page_url: Callable[[Charge], str | None] | None = None
) -> DomainEvent | None:
    """The event a charge's new status reports, or None when the status is not one we tell.

    CAPTURED (and AUTHORIZED under manual capture) is `charge.succeeded`; DECLINED, FAILED and
    EXPIRED are `charge.failed`; REQUIRES_3DS is `charge.requires_action` with the page URL.
    """
    if charge.status is S.CAPTURED or (
        charge.status is S.AUTHORIZED and charge.capture is CaptureMode.MANUAL
    ):
        kind = CHARGE_SUCCEEDED
    elif charge.status in (S.DECLINED, S.FAILED, S.EXPIRED):
        kind = CHARGE_FAILED
    elif charge.status is S.REQUIRES_3DS:
        kind = CHARGE_REQUIRES_ACTION
    else:
        return None
    renewal = parse_renewal_key(charge.idempotency_key)
    data: dict[str, Any] = {
        "chargeId": charge.id,
        "invoiceId": charge.invoice_id,
        "status": charge.status.value,
        "amount": charge.amount,
        "capturedAmount": charge.captured_amount,
        "currency": charge.currency,
        "accountId": charge.account_id,
        "cardId": mask_card_id(charge.card_id),
        "recurrent": charge.recurrent,
        "nextAction": web.next_action(charge, page_url),
        "error": web.error_view(charge),
        "subscription": None
        if renewal is None
        else {"id": renewal[0], "cycle": renewal[1], "attempt": renewal[2]},
    }
    # A charge can only enter a status once per conditional write; the id makes a re-entry after
    # NEEDS_REVIEW (e.g. CAPTURED again) the same fact.
    return DomainEvent(f"{kind}:{charge.id}", kind, charge.updated_at, data)


def charge_event_from_change(
    previous_status: str | None,
    charge: Charge,
    page_url: Callable[[Charge], str | None] | None = None,
) -> DomainEvent | None:
    """The event of one stored change of a charge item (the outbox: the table's stream).

    `previous_status` is the status before the write (None for a new item). A write that left the
    status as it was (a reconciler check, a capture flag) reports nothing; a new status reports
    what `charge_event` tells of it. Redeliveries of the same change give the same event id.
    """
    if previous_status == charge.status.value:
        return None
    return charge_event(charge, page_url)


def dumps_events(events: Sequence[DomainEvent]) -> list[str]:
    """Events as JSON strings (kept on a renewal claim until published)."""
    return [e.to_json() for e in events]


def loads_events(raw: Sequence[str]) -> list[DomainEvent]:
    """Events stored with `dumps_events`."""
    return [DomainEvent.from_json(r) for r in raw]


__all__ = [
    "EVENT_TYPES",
    "DomainEvent",
    "DomainEvents",
    "NullEvents",
    "charge_event",
    "charge_event_from_change",
    "dumps_events",
    "loads_events",
    "parse_renewal_key",
    "renewal_key",
]
