"""charge.* events: what happened to a charge, told to the merchant's systems.

Every event has a deterministic `id` built from the fact it reports
(`charge.succeeded:<chargeId>:CAPTURED`,
`subscription.renewed:<subscriptionId>#<cycle>`), so a publish that is retried, or repeated after a
crash, carries the same id and consumers can drop the copy. An event is published only by the
writer whose conditional write made the fact true (the winner); losers and replays publish nothing.
`charge.*` events are published from the table's stream (the write itself is the outbox:
`payments.aws.charge_stream` and functions/charge_events), never by the writer in-line.

This module builds the events; they are published through the DomainEvents port
(payments.shared.events), whose EventBridge adapter is payments.aws.eventbridge.
"""

from __future__ import annotations

import re
from typing import Any

from payments.charges import views
from payments.charges.model import CaptureMode, Charge, ChargeStatus
from payments.shared.events import DomainEvent

S = ChargeStatus
CHARGE_SUCCEEDED = "charge.succeeded"
CHARGE_FAILED = "charge.failed"
CHARGE_REQUIRES_ACTION = "charge.requires_action"
CHARGE_CANCELED = "charge.canceled"
# The idempotency key of a renewal charge. It contains a space, which the public API's
# Idempotency-Key header may not (printable ASCII without spaces), so no merchant request can
# ever collide with, replay or pre-empt a renewal's charge.
_RENEWAL_KEY_RE = re.compile(r"renewal (sub_[0-9a-f]{32})#([0-9]+)(?:#retry([0-9]+))?")


def renewal_key(subscription_id: str, cycle: int, attempt: int) -> str:
    """The charge idempotency key of one attempt of one billing cycle (`<sub>#<cycle>`)."""
    base = f"renewal {subscription_id}#{cycle}"
    return base if attempt == 0 else f"{base}#retry{attempt}"


def parse_renewal_key(key: str | None) -> tuple[str, int, int] | None:
    """(subscription id, cycle, attempt) of a renewal charge's key; None for other charges (and
    for a charge read back without its key: only a renewal's stays on the charge item)."""
    match = None if key is None else _RENEWAL_KEY_RE.fullmatch(key)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3) or 0)


def charge_event(charge: Charge, page_url: str | None = None) -> DomainEvent | None:
    """The event a charge's new status reports, or None when the status is not one we tell.

    CAPTURED (and AUTHORIZED under manual capture) is `charge.succeeded`; DECLINED, FAILED and
    EXPIRED are `charge.failed`; REQUIRES_3DS is `charge.requires_action` with the page URL;
    CANCELLED (a void) is `charge.canceled`.
    """
    if charge.status is S.CAPTURED or (
        charge.status is S.AUTHORIZED and charge.capture is CaptureMode.MANUAL
    ):
        kind = CHARGE_SUCCEEDED
    elif charge.status in (S.DECLINED, S.FAILED, S.EXPIRED):
        kind = CHARGE_FAILED
    elif charge.status is S.REQUIRES_3DS:
        kind = CHARGE_REQUIRES_ACTION
    elif charge.status is S.CANCELLED:
        kind = CHARGE_CANCELED
    else:
        return None
    renewal = parse_renewal_key(charge.idempotency_key)
    data: dict[str, Any] = {
        "chargeId": charge.id,
        **views.charge_summary(charge),
        "nextAction": views.next_action(charge, page_url),
        "error": views.error_view(charge),
        "subscription": None
        if renewal is None
        else {"id": renewal[0], "cycle": renewal[1], "attempt": renewal[2]},
    }
    # One id per fact: the status is part of it, so AUTHORIZED and then CAPTURED under manual
    # capture are two charge.succeeded events; a redelivery of the same change, or a re-entry
    # after NEEDS_REVIEW (CAPTURED again), is the same fact and repeats its id.
    return DomainEvent(event_id(kind, charge), kind, charge.updated_at, data)


def event_id(kind: str, charge: Charge) -> str:
    """The id of the event telling that `charge` reached its status (`<type>:<id>:<status>`)."""
    return f"{kind}:{charge.id}:{charge.status.value}"


def charge_event_from_change(
    previous_status: str | None, charge: Charge, page_url: str | None = None
) -> DomainEvent | None:
    """The event of one stored change of a charge item (the outbox: the table's stream).

    `previous_status` is the status before the write (None for a new item). A write that left the
    status as it was (a reconciler check, a capture flag) reports nothing; a new status reports
    what `charge_event` tells of it. Redeliveries of the same change give the same event id.
    """
    if previous_status == charge.status.value:
        return None
    return charge_event(charge, page_url)
