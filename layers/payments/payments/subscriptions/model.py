"""Subscriptions, their statuses, cycle claims and renewal messages."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from payments.errors import (
    ValidationError,
)
from payments.shared.clock import iso
from payments.shared.fields import matches
from payments.shared.payer import Payer
from payments.subscriptions.calendar import (
    BillingInterval,
    cycle_start,
    parse_time,
)

if TYPE_CHECKING:
    from payments.charges.requests import ChargeRequest

# 64 partitions of the due index, dispatched in parallel (one thread each): at the per-shard rate
# measured against moto (bench/dispatch_bench.py, README) 34 shards are needed to enqueue 1,000,000
# due subscriptions in 15 minutes; 64 leave room. Changing it later needs every subscription's
# renewShard rewritten, so it is a constant, not a setting.
RENEWAL_SHARDS = 64


class SubscriptionStatus(StrEnum):
    """Where a subscription is in its life."""

    ACTIVE = "ACTIVE"
    PAST_DUE = "PAST_DUE"
    PAUSED = "PAUSED"
    UNPAID = "UNPAID"
    CANCELLED = "CANCELLED"


SS = SubscriptionStatus
CHARGEABLE = frozenset({SS.ACTIVE, SS.PAST_DUE})


class PastDueReason(StrEnum):
    """Why a subscription is PAST_DUE (or UNPAID)."""

    RETRYING = "retrying"  # a soft decline; the next attempt is scheduled on the ladder
    CARD_REQUIRED = "card_required"  # a hard decline; only a new card (PATCH) helps
    RETRIES_EXHAUSTED = "retries_exhausted"  # the ladder ran out (UNPAID)


class FinalAction(StrEnum):
    """What happens when the soft-decline ladder runs out."""

    UNPAID = "unpaid"
    CANCELLED = "cancelled"


class ClaimState(StrEnum):
    """Where one attempt of one cycle is: claimed, then waiting, then final."""

    CLAIMED = "claimed"
    PENDING = "pending"  # the charge is UNKNOWN or NEEDS_REVIEW: look again later
    REQUIRES_ACTION = "requires_action"  # the customer must pass 3-D Secure
    PAID = "paid"
    DECLINED = "declined"
    OUTAGE = "outage"  # ePay was unreachable: nothing was charged
    ORPHANED = "orphaned"  # the subscription moved on while the attempt was charging


class RenewalOutcome(StrEnum):
    """What handling one renewal message did (one metric each)."""

    PAID = "paid"
    DECLINED = "declined"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELLED = "cancelled"
    REQUIRES_ACTION = "requires_action"
    PENDING = "pending"
    OUTAGE = "outage"
    DUPLICATE = "duplicate"
    STALE = "stale"


def renewal_shard(subscription_id: str) -> int:
    """The due-index partition of a subscription (spreads the dispatcher)."""
    return hashlib.sha256(subscription_id.encode()).digest()[0] % RENEWAL_SHARDS


# --- the model ---


@dataclass(frozen=True)
class Subscription:
    """A saved card charged every interval; `cycle` is the cycle to charge next (or now)."""

    id: str
    account_id: str
    card_id: str = field(repr=False)
    amount: Decimal
    currency: str
    description: str
    interval: BillingInterval
    anchor: datetime
    status: SubscriptionStatus
    idempotency_key: str
    request_hash: str
    created_at: datetime
    updated_at: datetime
    version: int = 1
    cycle: int = 0
    # attempt: index of the next charge attempt of `cycle` (part of its charge's idempotency key);
    # failures: soft declines of `cycle` so far (the rung of the retry ladder).
    attempt: int = 0
    failures: int = 0
    renew_at: datetime | None = None
    pending_amount: Decimal | None = None
    payer: Payer = field(default_factory=Payer)
    past_due_reason: PastDueReason | None = None
    paid_cycles: int = 0
    # The charge of the latest attempt that made one (paid, declined or pending; renewals).
    last_charge_id: str | None = None
    paused_at: datetime | None = None
    canceled_at: datetime | None = None
    cancel_reason: str | None = None

    def due_at(self, cycle: int | None = None) -> datetime:
        """When a cycle (default: the current one) is due."""
        return cycle_start(self.anchor, self.interval, self.cycle if cycle is None else cycle)


@dataclass(frozen=True)
class CycleClaim:
    """The claim on one attempt of one cycle: written once, it fixes what the attempt charges."""

    subscription_id: str
    cycle: int
    attempt: int
    amount: Decimal
    currency: str
    card_id: str = field(repr=False)
    account_id: str
    description: str
    claimed_at: datetime
    payer: Payer = field(default_factory=Payer)
    # claimed -> pending / requires_action (3DS, unknown) -> paid / declined / outage / orphaned
    state: ClaimState = ClaimState.CLAIMED
    charge_id: str | None = None
    # Events of the recorded outcome not yet known to be on the bus, and until when the writer
    # that recorded them (or took them over) has the sole right to publish them.
    pending_events: tuple[str, ...] = ()
    publish_until: datetime | None = None

    def charge_request(self) -> ChargeRequest:
        """What `POST /charges` would be asked: merchant-initiated, captured at once."""
        # Imported on use: only the renewal path charges; the subscriptions API and the event
        # publisher read subscriptions without loading the charge request rules.
        from payments.charges.model import CaptureMode
        from payments.charges.requests import ChargeRequest

        return ChargeRequest(
            amount=self.amount,
            currency=self.currency,
            card_id=self.card_id,
            account_id=self.account_id,
            description=self.description,
            capture=CaptureMode.AUTO,
            recurrent=True,
            payer=self.payer,
        )


FINAL_CLAIM_STATES = frozenset(
    {ClaimState.PAID, ClaimState.DECLINED, ClaimState.OUTAGE, ClaimState.ORPHANED}
)


@dataclass(frozen=True)
class RenewalMessage:
    """One SQS message: charge this attempt of this cycle (keyed `<subscriptionId>#<cycle>`)."""

    subscription_id: str
    cycle: int
    attempt: int
    due_at: datetime

    @property
    def key(self) -> str:
        """`<subscriptionId>#<cycle>`: the cycle this message is about."""
        return f"{self.subscription_id}#{self.cycle}"

    def body(self) -> str:
        """The message body (JSON)."""
        return json.dumps(
            {
                "key": self.key,
                "subscriptionId": self.subscription_id,
                "cycle": self.cycle,
                "attempt": self.attempt,
                "dueAt": iso(self.due_at),
            },
            separators=(",", ":"),
        )


SUBSCRIPTION_ID_RE = re.compile(r"\Asub_[0-9a-f]{32}\Z")


def parse_renewal_message(raw: str) -> RenewalMessage:
    """Read a message body strictly; a malformed one is a ValidationError (it goes to the DLQ)."""
    try:
        value = json.loads(raw)
        sub_id, cycle, attempt = value["subscriptionId"], value["cycle"], value["attempt"]
        due_at = parse_time(value["dueAt"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError("malformed renewal message") from exc
    if (
        not isinstance(sub_id, str)
        or not is_subscription_id(sub_id)
        or not isinstance(cycle, int)
        or not isinstance(attempt, int)
        or isinstance(cycle, bool)
        or isinstance(attempt, bool)
        or cycle < 0
        or attempt < 0
        or due_at is None
    ):
        raise ValidationError("malformed renewal message")
    return RenewalMessage(sub_id, cycle, attempt, due_at)


def is_subscription_id(value: str) -> bool:
    """True for a string shaped like a subscription id ("sub_" + 32 hex digits, as
    `Subscriptions` makes them); anything else is no subscription (a 404, unread)."""
    return matches(SUBSCRIPTION_ID_RE, value)
