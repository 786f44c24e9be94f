"""Subscriptions: recurring charges of a saved card, one charge per billing cycle.

Times are UTC. Cycle `n` of a subscription is due at `anchor + n * interval` (cycle 0 at its
start); months and years are counted from the anchor, and a day the month does not have is
clamped to the month's last day (anchored on 31 January: 28/29 February, 31 March, 30 April, ...),
so clamping never drifts.

The use cases see no boto3, SQS or EventBridge: a SubscriptionStore, a RenewalQueue, a
ChargeCreator (ChargeService.create_charge) and DomainEvents, all small Protocols.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from payments.errors import (
    ConfigurationError,
    ConflictError,
    DuplicateKeyError,
    EventPublishError,
    GatewayUnavailableError,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    InvalidTransitionError,
    NotFoundError,
    PaymentsError,
    StaleStateError,
    ValidationError,
)
from payments.events import (
    SUBSCRIPTION_CANCELED,
    SUBSCRIPTION_PAST_DUE,
    SUBSCRIPTION_RENEWED,
    DomainEvent,
    DomainEvents,
    renewal_key,
)
from payments.gateway import Deadline
from payments.models import (
    FIELD_RULES,
    CaptureMode,
    Charge,
    ChargeRequest,
    ChargeStatus,
    DeclineCategory,
    field_errors,
    from_iso,
    iso,
    mask_card_id,
    money_str,
    utc_now,
    validate_amount,
)

C = ChargeStatus
# 64 partitions of the due index, dispatched in parallel (one thread each): at the per-shard rate
# measured against moto (bench/dispatch_bench.py, README) 34 shards are needed to enqueue 1,000,000
# due subscriptions in 15 minutes; 64 leave room. Changing it later needs every subscription's
# renewShard rewritten, so it is a constant, not a setting.
RENEWAL_SHARDS = 64
LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 100
START_AT_MAX_AHEAD = timedelta(days=366)
START_AT_MAX_BEHIND = timedelta(minutes=5)
MIN_SECONDS_PER_PAGE = 5.0
DISPATCH_PAGE = 100


class Interval(StrEnum):
    """The unit of a billing interval."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


# At most three years between charges, whatever the unit.
MAX_INTERVAL_COUNT = {Interval.DAY: 1095, Interval.WEEK: 156, Interval.MONTH: 36, Interval.YEAR: 3}


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


# --- calendar ---


@dataclass(frozen=True)
class BillingInterval:
    """Every `count` units."""

    unit: Interval
    count: int

    def __str__(self) -> str:
        return f"{self.count} {self.unit.value}"


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by whole months, clamping the day to the target month's last day."""
    total = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(total, 12)
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return anchor.replace(year=year, month=month0 + 1, day=day)


def cycle_start(anchor: datetime, interval: BillingInterval, cycle: int) -> datetime:
    """When cycle `cycle` is due: always computed from the anchor, never from the previous one."""
    steps = interval.count * cycle
    if interval.unit is Interval.DAY:
        return anchor + timedelta(days=steps)
    if interval.unit is Interval.WEEK:
        return anchor + timedelta(weeks=steps)
    if interval.unit is Interval.MONTH:
        return add_months(anchor, steps)
    return add_months(anchor, 12 * steps)


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
    email: str | None = None
    phone: str | None = None
    back_link: str | None = None
    failure_back_link: str | None = None
    past_due_reason: PastDueReason | None = None
    paid_cycles: int = 0
    last_charge_id: str | None = None
    paused_at: datetime | None = None
    canceled_at: datetime | None = None
    cancel_reason: str | None = None

    def due_at(self, cycle: int | None = None) -> datetime:
        """When a cycle (default: the current one) is due."""
        return cycle_start(self.anchor, self.interval, self.cycle if cycle is None else cycle)


@dataclass(frozen=True)
class SubscriptionRequest:
    """A validated POST /subscriptions body."""

    account_id: str
    card_id: str = field(repr=False)
    amount: Decimal
    currency: str
    description: str
    interval: BillingInterval
    start_at: datetime | None = None
    email: str | None = None
    phone: str | None = None
    back_link: str | None = None
    failure_back_link: str | None = None

    def fingerprint(self) -> str:
        """A stable digest of the request, to tell a replay from a reused key."""
        fields = {
            "accountId": self.account_id,
            "cardId": self.card_id,
            "amount": money_str(self.amount),
            "currency": self.currency,
            "description": self.description,
            "interval": str(self.interval),
            "startAt": iso(self.start_at) if self.start_at else "",
            "email": self.email or "",
            "phone": self.phone or "",
            "backLink": self.back_link or "",
            "failureBackLink": self.failure_back_link or "",
        }
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class SubscriptionUpdate:
    """A validated PATCH /subscriptions/{id} body: at least one field."""

    card_id: str | None = field(default=None, repr=False)
    amount: Decimal | None = None
    description: str | None = None


@dataclass(frozen=True)
class SubscriptionKey:
    """Which subscription an Idempotency-Key created, and the request's fingerprint."""

    key: str
    subscription_id: str
    request_hash: str


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


_SUB_ID_RE = re.compile(r"^sub_[0-9a-f]{32}$")


def parse_renewal_message(raw: str) -> RenewalMessage:
    """Read a message body strictly; a malformed one is a ValidationError (it goes to the DLQ)."""
    try:
        value = json.loads(raw)
        sub_id, cycle, attempt = value["subscriptionId"], value["cycle"], value["attempt"]
        due_at = _parse_time(value["dueAt"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError("malformed renewal message") from exc
    if (
        not isinstance(sub_id, str)
        or not _SUB_ID_RE.match(sub_id)
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
    email: str | None = None
    phone: str | None = None
    back_link: str | None = None
    failure_back_link: str | None = None
    # claimed -> pending / requires_action (3DS, unknown) -> paid / declined / outage / orphaned
    state: str = "claimed"
    charge_id: str | None = None
    # Events of the recorded outcome not yet known to be on the bus, and until when the writer
    # that recorded them (or took them over) has the sole right to publish them.
    pending_events: tuple[str, ...] = ()
    publish_until: datetime | None = None

    def charge_request(self) -> ChargeRequest:
        """What `POST /charges` would be asked: merchant-initiated, captured at once."""
        return ChargeRequest(
            amount=self.amount,
            currency=self.currency,
            card_id=self.card_id,
            account_id=self.account_id,
            description=self.description,
            capture=CaptureMode.AUTO,
            recurrent=True,
            email=self.email,
            phone=self.phone,
            back_link=self.back_link,
            failure_back_link=self.failure_back_link,
        )


FINAL_CLAIM_STATES = frozenset({"paid", "declined", "outage", "orphaned"})


# --- validation ---

_SUBSCRIPTION_FIELDS = frozenset(
    {
        "accountId",
        "cardId",
        "amount",
        "currency",
        "description",
        "interval",
        "startAt",
        "email",
        "phone",
        "backLink",
        "failureBackLink",
    }
)
_REQUIRED = ("accountId", "cardId", "amount", "currency", "description", "interval")
_UPDATE_FIELDS = frozenset({"cardId", "amount", "description"})


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = from_iso(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def parse_interval(value: Any) -> BillingInterval | str:
    """`{"unit": "day|week|month|year", "count": n}`, or a message saying what is wrong."""
    if not isinstance(value, dict) or set(value) - {"unit", "count"} or "unit" not in value:
        return 'must be an object {"unit": "day|week|month|year", "count": <integer>}'
    unit = value["unit"]
    if unit not in {i.value for i in Interval}:
        return "unit must be one of day, week, month, year"
    count = value.get("count", 1)
    limit = MAX_INTERVAL_COUNT[Interval(unit)]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limit:
        return f"count must be an integer from 1 to {limit} for {unit}"
    return BillingInterval(Interval(unit), count)


def parse_subscription_request(body: Any, now: datetime) -> SubscriptionRequest:
    """Validate a decoded JSON body (as strictly as POST /charges) or raise per field."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = field_errors(body, _SUBSCRIPTION_FIELDS, _REQUIRED)
    interval = parse_interval(body["interval"]) if body.get("interval") is not None else None
    if isinstance(interval, str):
        errors["interval"] = interval

    start_at = None
    if body.get("startAt") is not None:
        start_at = _parse_time(body["startAt"])
        if start_at is None:
            errors["startAt"] = "must be an ISO-8601 time with an offset, e.g. 2027-01-31T09:00:00Z"
        elif start_at < now - START_AT_MAX_BEHIND:
            errors["startAt"] = "must not be in the past"
        elif start_at > now + START_AT_MAX_AHEAD:
            errors["startAt"] = "must be within 366 days"

    if errors:
        raise ValidationError("the request is invalid", errors)
    amount = validate_amount(body["amount"])
    assert isinstance(amount, Decimal)
    assert isinstance(interval, BillingInterval)
    return SubscriptionRequest(
        account_id=str(body["accountId"]),
        card_id=str(body["cardId"]),
        amount=amount,
        currency=str(body["currency"]),
        description=str(body["description"]),
        interval=interval,
        start_at=start_at,
        email=body.get("email"),
        phone=body.get("phone"),
        back_link=body.get("backLink"),
        failure_back_link=body.get("failureBackLink"),
    )


def parse_subscription_update(body: Any) -> SubscriptionUpdate:
    """Validate a PATCH body: `cardId`, `amount` and/or `description`."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = field_errors(body, _UPDATE_FIELDS, ())
    if not set(body) & _UPDATE_FIELDS:
        errors["body"] = "give at least one of cardId, amount, description"
    for name in _UPDATE_FIELDS & set(body):
        if body[name] is None:
            errors[name] = "must not be null"
    if errors:
        raise ValidationError("the request is invalid", errors)
    amount = validate_amount(body["amount"]) if body.get("amount") is not None else None
    return SubscriptionUpdate(
        card_id=body.get("cardId"),
        amount=amount if isinstance(amount, Decimal) else None,
        description=body.get("description"),
    )


def parse_list_query(params: Mapping[str, str] | None) -> tuple[str, int, str | None]:
    """`accountId` (required), `limit` (1-100, default 20) and an opaque `cursor`."""
    params = params or {}
    errors: dict[str, str] = {}
    unknown = sorted(set(params) - {"accountId", "limit", "cursor"})
    for name in unknown:
        errors[name[:64]] = "unknown parameter"
    account_id = params.get("accountId")
    if account_id is None or FIELD_RULES["accountId"](account_id) is not None:
        errors["accountId"] = "is required (at most 100 characters)"
    raw_limit = params.get("limit", str(LIST_LIMIT_DEFAULT))
    limit = int(raw_limit) if raw_limit.isdigit() and len(raw_limit) < 4 else 0
    if not 1 <= limit <= LIST_LIMIT_MAX:
        errors["limit"] = f"must be an integer from 1 to {LIST_LIMIT_MAX}"
    cursor = params.get("cursor")
    if cursor is not None and decode_cursor(cursor) is None:
        errors["cursor"] = "is not a cursor this API returned"
    if errors:
        raise ValidationError("the query is invalid", errors)
    return str(account_id), limit, cursor


def encode_cursor(position: str) -> str:
    """An opaque page cursor (the listing item's sort key)."""
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str | None:
    """The sort key inside a cursor, or None if it is not one of ours."""
    if len(cursor) > 400:
        return None
    try:
        position = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return position if position.startswith("SUB#") else None


# --- configuration of renewals ------------------------------------------------------------------

_DURATION_RE = re.compile(r"^([0-9]{1,4})([mhd])$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_ladder(value: str) -> tuple[timedelta, ...]:
    """`"1d,3d,5d"` -> the delays after the 1st, 2nd and 3rd soft decline (m, h or d)."""
    rungs = []
    for part in value.split(","):
        match = _DURATION_RE.match(part.strip())
        if match is None or int(match.group(1)) == 0:
            raise ConfigurationError(
                "RENEWAL_RETRY_LADDER must be comma-separated durations like 1d,3d,5d (m, h, d)"
            )
        rungs.append(int(match.group(1)) * _UNITS[match.group(2)])
    if not 1 <= len(rungs) <= 10:
        raise ConfigurationError("RENEWAL_RETRY_LADDER must have 1 to 10 rungs")
    return tuple(rungs)


@dataclass(frozen=True)
class RenewalPolicy:
    """How renewals retry: the soft-decline ladder, what follows it, and re-check delays."""

    ladder: tuple[timedelta, ...] = (timedelta(days=1), timedelta(days=3), timedelta(days=5))
    final_action: FinalAction = FinalAction.UNPAID
    # A cycle whose charge waits for the customer (3DS) or for the reconciler (UNKNOWN) is looked
    # at again after this; its message replays the same charge, so nothing is charged twice.
    pending_recheck: timedelta = timedelta(minutes=15)
    review_recheck: timedelta = timedelta(hours=6)
    # ePay unreachable (nothing charged): a new attempt after this, not counted as a decline.
    outage_retry: timedelta = timedelta(minutes=5)
    # A dispatched cycle nobody recorded an outcome for (lost send, DLQ) is dispatched again.
    lease: timedelta = timedelta(hours=6)
    # How long the writer of an outcome alone may publish its events before a redelivery may.
    publish_lease: timedelta = timedelta(minutes=2)


def load_renewal_policy(env: Mapping[str, str]) -> RenewalPolicy:
    """RENEWAL_RETRY_LADDER (default 1d,3d,5d) and RENEWAL_FINAL_ACTION (unpaid|cancelled)."""
    ladder = parse_ladder(env.get("RENEWAL_RETRY_LADDER") or "1d,3d,5d")
    final = (env.get("RENEWAL_FINAL_ACTION") or FinalAction.UNPAID.value).strip().lower()
    if final not in {a.value for a in FinalAction}:
        raise ConfigurationError("RENEWAL_FINAL_ACTION must be unpaid or cancelled")
    return RenewalPolicy(ladder=ladder, final_action=FinalAction(final))


# --- ports ---


class SubscriptionStore(Protocol):
    """What the subscription use cases need from DynamoDB."""

    def create(self, subscription: Subscription) -> None:
        """Write a new subscription, its key and its account listing (DuplicateKeyError)."""
        ...

    def get(self, subscription_id: str) -> Subscription | None:
        """Read a subscription (strongly consistent)."""
        ...

    def get_key(self, key: str) -> SubscriptionKey | None:
        """Which subscription an Idempotency-Key created."""
        ...

    def list_by_account(
        self, account_id: str, limit: int, after: str | None
    ) -> tuple[list[Subscription], str | None]:
        """One page of an account's subscriptions, oldest first, and the next position."""
        ...

    def save(self, current: Subscription, updated: Subscription) -> Subscription:
        """Replace `current` if its version is still the one read (StaleStateError)."""
        ...

    def due(self, shard: int, now: datetime, limit: int) -> list[tuple[str, datetime]]:
        """(id, renewAt) of subscriptions due in one shard of the sparse index."""
        ...

    def lease(
        self, subscription_id: str, seen: datetime, until: datetime, now: datetime
    ) -> Subscription | None:
        """Move renewAt from `seen` to `until` (one conditional write); None if it moved."""
        ...

    def get_claim(self, subscription_id: str, cycle: int, attempt: int) -> CycleClaim | None:
        """The claim on an attempt of a cycle, or None."""
        ...

    def claim(self, subscription: Subscription, claim: CycleClaim) -> None:
        """Write the claim if the subscription is unchanged (StaleStateError) and the claim new
        (DuplicateKeyError)."""
        ...

    def record(
        self, current: Subscription, updated: Subscription, claim: CycleClaim
    ) -> Subscription:
        """Write the attempt's outcome on the claim and the subscription, together."""
        ...

    def events_published(self, claim: CycleClaim) -> None:
        """Forget the claim's pending events (they reached the bus)."""
        ...

    def take_publishing(self, claim: CycleClaim, now: datetime, until: datetime) -> bool:
        """Take over publishing a claim's pending events whose publisher's time ran out."""
        ...


class RenewalQueue(Protocol):
    """The renewal queue (SQS)."""

    def send(self, messages: list[RenewalMessage]) -> None:
        """Enqueue every message (batched) or raise."""
        ...


class ChargeCreator(Protocol):
    """The one use case that charges a card once per key (ChargeService)."""

    def create_charge(
        self, request: ChargeRequest, idempotency_key: str, deadline: Deadline
    ) -> Any:
        """A CreateResult with `.charge`."""
        ...


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
        "lastChargeId": sub.last_charge_id,
        "email": sub.email,
        "phone": sub.phone,
        "backLink": sub.back_link,
        "failureBackLink": sub.failure_back_link,
        "createdAt": iso(sub.created_at),
        "updatedAt": iso(sub.updated_at),
        "pausedAt": iso(sub.paused_at) if sub.paused_at else None,
        "canceledAt": iso(sub.canceled_at) if sub.canceled_at else None,
        "cancelReason": sub.cancel_reason,
    }


def _event(kind: str, event_id: str, sub: Subscription, now: datetime, **data: Any) -> DomainEvent:
    base: dict[str, Any] = {
        "subscriptionId": sub.id,
        "accountId": sub.account_id,
        "status": sub.status.value,
        "amount": sub.amount,
        "currency": sub.currency,
    }
    return DomainEvent(event_id, kind, now, {**base, **data})


# --- the API use cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """The subscription a create produced, and whether it was a replay."""

    subscription: Subscription
    replayed: bool


class Subscriptions:
    """Create, read, list, update, pause, resume and cancel subscriptions."""

    def __init__(
        self,
        *,
        store: SubscriptionStore,
        events: DomainEvents,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = lambda: "sub_" + secrets.token_hex(16),
        on_publish_error: Callable[[DomainEvent, PaymentsError], None] | None = None,
    ) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        self._new_id = new_id
        self._on_publish_error = on_publish_error

    def now(self) -> datetime:
        """The injected clock (handlers validate startAt against it)."""
        return self._clock()

    def create(self, request: SubscriptionRequest, idempotency_key: str) -> Created:
        """Create once per Idempotency-Key; cycle 0 is due at startAt (default: now)."""
        fingerprint = request.fingerprint()
        existing = self._store.get_key(idempotency_key)
        if existing is not None:
            return self._replay(existing, fingerprint)
        now = self._clock()
        anchor = request.start_at or now.replace(microsecond=now.microsecond // 1000 * 1000)
        sub = Subscription(
            id=self._new_id(),
            account_id=request.account_id,
            card_id=request.card_id,
            amount=request.amount,
            currency=request.currency,
            description=request.description,
            interval=request.interval,
            anchor=anchor,
            status=SS.ACTIVE,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            created_at=now,
            updated_at=now,
            renew_at=anchor,
            email=request.email,
            phone=request.phone,
            back_link=request.back_link,
            failure_back_link=request.failure_back_link,
        )
        try:
            self._store.create(sub)
        except DuplicateKeyError:
            record = self._store.get_key(idempotency_key)
            if record is None:
                raise IdempotencyInFlightError(
                    "the request is being processed, retry later"
                ) from None
            return self._replay(record, fingerprint)
        return Created(sub, replayed=False)

    def _replay(self, record: SubscriptionKey, fingerprint: str) -> Created:
        if record.request_hash != fingerprint:
            raise IdempotencyMismatchError(
                "this Idempotency-Key was used with a different request body"
            )
        return Created(self.get(record.subscription_id), replayed=True)

    def get(self, subscription_id: str) -> Subscription:
        """The stored subscription, or NotFoundError."""
        sub = self._store.get(subscription_id) if _SUB_ID_RE.match(subscription_id) else None
        if sub is None:
            raise NotFoundError("no such subscription")
        return sub

    def list_for_account(
        self, account_id: str, limit: int, cursor: str | None
    ) -> tuple[list[Subscription], str | None]:
        """One page of an account's subscriptions (oldest first) and the next page's cursor."""
        after = decode_cursor(cursor) if cursor else None
        items, last = self._store.list_by_account(account_id, limit, after)
        return items, encode_cursor(last) if last else None

    def cancel(self, subscription_id: str) -> Subscription:
        """Cancel now: no further charge is dispatched; an attempt already charging completes."""
        return self._change(subscription_id, self._cancel)

    def pause(self, subscription_id: str) -> Subscription:
        """Stop dispatching until resumed."""
        return self._change(subscription_id, self._pause)

    def resume(self, subscription_id: str) -> Subscription:
        """Continue with the earliest cycle whose period has not ended (missed ones are skipped)."""
        return self._change(subscription_id, self._resume)

    def update(self, subscription_id: str, change: SubscriptionUpdate) -> Subscription:
        """Change the card (from the next attempt) or the amount (from the next cycle)."""
        return self._change(subscription_id, lambda sub, now: (self._update(sub, change, now), []))

    # -- transitions, each applied with one conditional write (retried on a lost race) --

    def _change(
        self,
        subscription_id: str,
        decide: Callable[[Subscription, datetime], tuple[Subscription, list[DomainEvent]]],
    ) -> Subscription:
        for _attempt in range(5):
            sub = self.get(subscription_id)
            now = self._clock()
            updated, events = decide(sub, now)
            if updated is sub:
                return sub
            try:
                stored = self._store.save(sub, replace(updated, updated_at=now))
            except StaleStateError:
                continue
            self._publish(events)
            return stored
        raise ConflictError("the subscription is changing concurrently, retry")

    def _publish(self, events: list[DomainEvent]) -> None:
        """After the write: a refused event is reported, the change stands (decisions.md)."""
        if not events:
            return
        try:
            self._events.publish(events)
        except EventPublishError as exc:
            if self._on_publish_error is None:
                raise
            for event in events:
                self._on_publish_error(event, exc)

    @staticmethod
    def _cancel(sub: Subscription, now: datetime) -> tuple[Subscription, list[DomainEvent]]:
        if sub.status is SS.CANCELLED:
            return sub, []
        cancelled = replace(
            sub, status=SS.CANCELLED, renew_at=None, canceled_at=now, cancel_reason="requested"
        )
        event = _event(
            SUBSCRIPTION_CANCELED,
            f"{SUBSCRIPTION_CANCELED}:{sub.id}",
            cancelled,
            now,
            reason="requested",
            cycle=sub.cycle,
        )
        return cancelled, [event]

    @staticmethod
    def _pause(sub: Subscription, now: datetime) -> tuple[Subscription, list[DomainEvent]]:
        if sub.status is SS.PAUSED:
            return sub, []
        if sub.status not in CHARGEABLE:
            raise InvalidTransitionError(f"a {sub.status.value} subscription cannot be paused")
        return replace(sub, status=SS.PAUSED, renew_at=None, paused_at=now), []

    @staticmethod
    def _resume(sub: Subscription, now: datetime) -> tuple[Subscription, list[DomainEvent]]:
        if sub.status in CHARGEABLE:
            return sub, []
        if sub.status is not SS.PAUSED:
            raise InvalidTransitionError(f"a {sub.status.value} subscription cannot be resumed")
        cycle = sub.cycle
        while sub.due_at(cycle + 1) <= now:
            cycle += 1
        resumed = replace(sub, status=SS.ACTIVE, paused_at=None, past_due_reason=None)
        if cycle != sub.cycle:
            amount = sub.pending_amount or sub.amount
            resumed = replace(
                resumed, cycle=cycle, attempt=0, failures=0, amount=amount, pending_amount=None
            )
        return replace(resumed, renew_at=max(resumed.due_at(), now)), []

    @staticmethod
    def _update(sub: Subscription, change: SubscriptionUpdate, now: datetime) -> Subscription:
        if sub.status is SS.CANCELLED:
            raise InvalidTransitionError("a CANCELLED subscription cannot be changed")
        updated = sub
        if change.description is not None:
            updated = replace(updated, description=change.description)
        if change.amount is not None:
            if sub.due_at() <= now:  # the current cycle is due or being charged: keep its amount
                updated = replace(updated, pending_amount=change.amount)
            else:
                updated = replace(updated, amount=change.amount, pending_amount=None)
        if change.card_id is not None:
            updated = replace(updated, card_id=change.card_id)
            if sub.status is SS.UNPAID or sub.past_due_reason is PastDueReason.CARD_REQUIRED:
                # A new card for an unpaid cycle: try it now, with a fresh retry ladder.
                updated = replace(
                    updated,
                    status=SS.PAST_DUE,
                    past_due_reason=PastDueReason.RETRYING,
                    failures=0,
                    renew_at=now,
                )
        return updated


# --- dispatch and renewal -------------------------------------------------------------------------


@dataclass
class DispatchReport:
    """What one dispatcher run did."""

    enqueued: int = 0
    skipped: int = 0
    shards: int = 0


@dataclass(frozen=True)
class RenewalResult:
    """What a renewal message did: paid, declined, past_due, pending, requires_action, outage,
    duplicate or stale (nothing to do)."""

    outcome: str
    charge_id: str | None = None


class Renewals:
    """Finds due cycles (dispatch) and charges each attempt once (renew)."""

    def __init__(
        self,
        *,
        store: SubscriptionStore,
        queue: RenewalQueue,
        charges: ChargeCreator,
        events: DomainEvents,
        policy: RenewalPolicy,
        clock: Callable[[], datetime] = utc_now,
        shards: int = RENEWAL_SHARDS,
        parallelism: int = RENEWAL_SHARDS,
        page_size: int = DISPATCH_PAGE,
    ) -> None:
        self._store = store
        self._queue = queue
        self._charges = charges
        self._events = events
        self._policy = policy
        self._clock = clock
        self._shards = shards
        self._parallelism = max(1, parallelism)
        self._page = page_size

    # -- dispatch --

    def dispatch(self, deadline: Deadline) -> DispatchReport:
        """Enqueue every cycle due now, once: only the writer that moved renewAt sends."""
        now = self._clock()
        report = DispatchReport(shards=self._shards)
        with ThreadPoolExecutor(max_workers=self._parallelism) as pool:
            for enqueued, skipped in pool.map(
                lambda shard: self.dispatch_shard(shard, now, deadline), range(self._shards)
            ):
                report.enqueued += enqueued
                report.skipped += skipped
        return report

    def dispatch_shard(self, shard: int, now: datetime, deadline: Deadline) -> tuple[int, int]:
        """Lease and enqueue one shard's due subscriptions; (enqueued, skipped)."""
        enqueued = skipped = 0
        seen: set[str] = set()
        while deadline.remaining() > MIN_SECONDS_PER_PAGE:
            page = [d for d in self._store.due(shard, now, self._page) if d[0] not in seen]
            if not page:
                break
            messages: list[RenewalMessage] = []
            for sub_id, renew_at in page:
                seen.add(sub_id)
                leased = self._store.lease(sub_id, renew_at, now + self._policy.lease, now)
                if leased is None:
                    skipped += 1
                    continue
                messages.append(
                    RenewalMessage(leased.id, leased.cycle, leased.attempt, leased.due_at())
                )
            if messages:
                self._queue.send(messages)
                enqueued += len(messages)
        return enqueued, skipped

    # -- renew --

    def renew(self, message: RenewalMessage, deadline: Deadline) -> RenewalResult:
        """Charge one attempt of one cycle once, whoever delivers the message how often."""
        claim = self._store.get_claim(message.subscription_id, message.cycle, message.attempt)
        if claim is None:
            claim = self._claim(message)
            if claim is None:
                return RenewalResult("stale")
        if claim.state in FINAL_CLAIM_STATES:
            self._flush_stranded(claim)
            return RenewalResult("duplicate", claim.charge_id)
        key = renewal_key(message.subscription_id, message.cycle, message.attempt)
        charge: Charge | None
        try:
            charge = self._charges.create_charge(claim.charge_request(), key, deadline).charge
        except GatewayUnavailableError:
            charge = None  # ePay unreachable: the charge is FAILED, nothing was taken
        return self._record(message, claim, charge)

    def _claim(self, message: RenewalMessage) -> CycleClaim | None:
        for _attempt in range(5):
            sub = self._store.get(message.subscription_id)
            if (
                sub is None
                or sub.status not in CHARGEABLE
                or (sub.cycle, sub.attempt) != (message.cycle, message.attempt)
            ):
                return None
            claim = CycleClaim(
                subscription_id=sub.id,
                cycle=sub.cycle,
                attempt=sub.attempt,
                amount=sub.amount,
                currency=sub.currency,
                card_id=sub.card_id,
                account_id=sub.account_id,
                description=sub.description,
                claimed_at=self._clock(),
                email=sub.email,
                phone=sub.phone,
                back_link=sub.back_link,
                failure_back_link=sub.failure_back_link,
            )
            try:
                self._store.claim(sub, claim)
            except DuplicateKeyError:
                return self._store.get_claim(sub.id, sub.cycle, sub.attempt)
            except StaleStateError:
                continue
            return claim
        raise ConflictError("the subscription is changing concurrently, retry")

    def _record(
        self, message: RenewalMessage, claim: CycleClaim, charge: Charge | None
    ) -> RenewalResult:
        charge_id = charge.id if charge is not None else None
        for _attempt in range(5):
            sub = self._store.get(message.subscription_id)
            if sub is None:
                raise NotFoundError("the subscription vanished")
            if (sub.cycle, sub.attempt) != (message.cycle, message.attempt):
                # Someone recorded this attempt already (a duplicate), or the subscription moved
                # on (resumed past this cycle) while it was charging: keep the charge on the claim.
                latest = self._store.get_claim(sub.id, message.cycle, message.attempt) or claim
                if latest.state not in FINAL_CLAIM_STATES:
                    orphan = replace(latest, state="orphaned", charge_id=charge_id)
                    self._store.record(sub, sub, orphan)
                    return RenewalResult("stale", charge_id)
                self._flush_stranded(latest)
                return RenewalResult("duplicate", latest.charge_id)
            now = self._clock()
            updated, state, outcome, events = self._decide(sub, charge, now)
            pending = tuple(e.to_json() for e in events)
            recorded = replace(
                claim,
                state=state,
                charge_id=charge_id,
                pending_events=pending,
                publish_until=now + self._policy.publish_lease if pending else None,
            )
            try:
                self._store.record(sub, replace(updated, updated_at=now), recorded)
            except StaleStateError:
                continue
            self._flush(recorded)
            return RenewalResult(outcome, charge_id)
        raise ConflictError("the subscription is changing concurrently, retry")

    def _flush(self, claim: CycleClaim) -> None:
        """Publish a recorded attempt's events, then forget them."""
        if not claim.pending_events:
            return
        self._events.publish([DomainEvent.from_json(raw) for raw in claim.pending_events])
        self._store.events_published(claim)

    def _flush_stranded(self, claim: CycleClaim) -> None:
        """A redelivery publishes events whose writer died before publishing them (same ids),
        only once that writer's time is up and only if it wins the takeover."""
        if not claim.pending_events:
            return
        now = self._clock()
        if claim.publish_until is not None and claim.publish_until > now:
            return
        if self._store.take_publishing(claim, now, now + self._policy.publish_lease):
            self._flush(claim)

    def _decide(
        self, sub: Subscription, charge: Charge | None, now: datetime
    ) -> tuple[Subscription, str, str, list[DomainEvent]]:
        """(the subscription after, the claim's state, the outcome, the events) of one attempt."""
        chargeable = sub.status in CHARGEABLE
        if charge is None or charge.status is C.FAILED:
            # ePay could not be reached: nothing was charged. A new attempt (a new key: the
            # FAILED charge's key answers 503 forever), not counted as a decline.
            retry = now + self._policy.outage_retry
            return (
                replace(sub, attempt=sub.attempt + 1, renew_at=retry if chargeable else None),
                "outage",
                "outage",
                [],
            )
        if charge.status in (C.CAPTURED, C.AUTHORIZED):
            return self._paid(sub, charge, now)
        if charge.status in (C.DECLINED, C.EXPIRED, C.CANCELLED):
            return self._declined(sub, charge, now)
        # REQUIRES_3DS (the customer must act), UNKNOWN or NEEDS_REVIEW (the reconciler or a
        # person settles it): look again later; the same key replays the same charge.
        delay = (
            self._policy.review_recheck
            if charge.status is C.NEEDS_REVIEW
            else self._policy.pending_recheck
        )
        state = "requires_action" if charge.status is C.REQUIRES_3DS else "pending"
        return (
            replace(sub, renew_at=now + delay if chargeable else None),
            state,
            state,
            [],
        )

    def _paid(
        self, sub: Subscription, charge: Charge, now: datetime
    ) -> tuple[Subscription, str, str, list[DomainEvent]]:
        cycle = sub.cycle
        nxt = sub.cycle + 1
        status = SS.ACTIVE if sub.status in CHARGEABLE else sub.status
        advanced = replace(
            sub,
            status=status,
            cycle=nxt,
            attempt=0,
            failures=0,
            amount=sub.pending_amount or sub.amount,
            pending_amount=None,
            past_due_reason=None,
            paid_cycles=sub.paid_cycles + 1,
            last_charge_id=charge.id,
            renew_at=sub.due_at(nxt) if status is SS.ACTIVE else None,
        )
        event = _event(
            SUBSCRIPTION_RENEWED,
            f"{SUBSCRIPTION_RENEWED}:{sub.id}#{cycle}",
            advanced,
            now,
            amount=charge.amount,
            cycle=cycle,
            chargeId=charge.id,
            periodStart=iso(sub.due_at(cycle)),
            periodEnd=iso(sub.due_at(nxt)),
            nextChargeAt=iso(advanced.due_at()) if status is SS.ACTIVE else None,
        )
        return advanced, "paid", "paid", [event]

    def _declined(
        self, sub: Subscription, charge: Charge, now: datetime
    ) -> tuple[Subscription, str, str, list[DomainEvent]]:
        category = charge.error.category if charge.error else DeclineCategory.OTHER.value
        code = charge.error.code if charge.error else charge.status.value.lower()
        attempt = sub.attempt
        after = replace(sub, attempt=attempt + 1, failures=sub.failures + 1)
        if sub.status not in CHARGEABLE:  # paused or cancelled meanwhile: remember, do nothing
            return replace(after, renew_at=None), "declined", "declined", []

        def past_due(updated: Subscription, reason: str, **extra: Any) -> DomainEvent:
            return _event(
                SUBSCRIPTION_PAST_DUE,
                f"{SUBSCRIPTION_PAST_DUE}:{sub.id}#{sub.cycle}#{attempt}",
                updated,
                now,
                amount=charge.amount,
                cycle=sub.cycle,
                attempt=attempt,
                chargeId=charge.id,
                reason=reason,
                declineCode=code,
                declineCategory=category,
                **extra,
            )

        if category == DeclineCategory.HARD.value:
            hard = replace(
                after,
                status=SS.PAST_DUE,
                past_due_reason=PastDueReason.CARD_REQUIRED,
                renew_at=None,
            )
            return hard, "declined", "past_due", [past_due(hard, "card_required")]
        ladder = self._policy.ladder
        if after.failures <= len(ladder):
            retry_at = now + ladder[after.failures - 1]
            retrying = replace(
                after, status=SS.PAST_DUE, past_due_reason=PastDueReason.RETRYING, renew_at=retry_at
            )
            return (
                retrying,
                "declined",
                "declined",
                [past_due(retrying, "retrying", nextRetryAt=iso(retry_at))],
            )
        if self._policy.final_action is FinalAction.CANCELLED:
            cancelled = replace(
                after,
                status=SS.CANCELLED,
                renew_at=None,
                canceled_at=now,
                cancel_reason="unpaid",
                past_due_reason=PastDueReason.RETRIES_EXHAUSTED,
            )
            event = _event(
                SUBSCRIPTION_CANCELED,
                f"{SUBSCRIPTION_CANCELED}:{sub.id}",
                cancelled,
                now,
                reason="unpaid",
                cycle=sub.cycle,
                chargeId=charge.id,
            )
            return cancelled, "declined", "cancelled", [event]
        unpaid = replace(
            after,
            status=SS.UNPAID,
            renew_at=None,
            past_due_reason=PastDueReason.RETRIES_EXHAUSTED,
        )
        return unpaid, "declined", "unpaid", [past_due(unpaid, "retries_exhausted")]
