"""The API's resources as frozen dataclasses: money as Decimal, times as aware datetimes.

Each keeps the answer's whole JSON object in `raw`, so a field the API adds later is readable
before the client learns it. `replayed` is True when the API answered an earlier request's result
for the same Idempotency-Key (`Idempotent-Replayed: true`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

T = TypeVar("T")

JsonObject = Mapping[str, Any]


def _money(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise TypeError(f"not an amount: {type(value).__name__}")
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _opt_money(value: Any) -> Decimal | None:
    return None if value is None else _money(value)


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError("not a timestamp")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _obj(value: Any) -> JsonObject | None:
    return value if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class ErrorInfo:
    """Why a charge, refund or card setup did not succeed (`category` for charge declines:
    `hard`, `soft`, `authentication`, `other`)."""

    code: str
    message: str
    category: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> ErrorInfo | None:
        """Read an `error` object; None for null."""
        obj = _obj(data)
        if obj is None:
            return None
        return cls(
            str(obj.get("code")), str(obj.get("message") or ""), _opt_str(obj.get("category"))
        )


@dataclass(frozen=True)
class EpayDetails:
    """What ePay told of a charge's transaction."""

    transaction_id: str | None
    reference: str | None
    approval_code: str | None
    card_mask: str | None


@dataclass(frozen=True)
class NextAction:
    """What the customer must do next: `redirect` to `url` (the 3-D Secure page)."""

    type: str
    url: str | None


@dataclass(frozen=True)
class Charge:
    """A charge (`status`: PROCESSING, REQUIRES_3DS, AUTHORIZED, CAPTURED, PARTIALLY_REFUNDED,
    REFUNDED, CANCELLED, DECLINED, EXPIRED, FAILED, UNKNOWN, NEEDS_REVIEW)."""

    id: str
    status: str
    invoice_id: str
    amount: Decimal
    captured_amount: Decimal | None
    refunded_amount: Decimal | None
    currency: str
    account_id: str
    card_id: str
    description: str | None
    capture: str | None
    recurrent: bool | None
    created_at: datetime
    updated_at: datetime
    epay: EpayDetails
    next_action: NextAction | None
    error: ErrorInfo | None
    raw: JsonObject = field(repr=False, compare=False)
    replayed: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject, *, replayed: bool = False) -> Charge:
        """Read a charge resource."""
        epay = _obj(data.get("epay")) or {}
        action = _obj(data.get("nextAction"))
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            invoice_id=str(data["invoiceId"]),
            amount=_money(data["amount"]),
            captured_amount=_opt_money(data.get("capturedAmount")),
            refunded_amount=_opt_money(data.get("refundedAmount")),
            currency=str(data["currency"]),
            account_id=str(data["accountId"]),
            card_id=str(data["cardId"]),
            description=_opt_str(data.get("description")),
            capture=_opt_str(data.get("capture")),
            recurrent=data.get("recurrent"),
            created_at=_time(data["createdAt"]),
            updated_at=_time(data["updatedAt"]),
            epay=EpayDetails(
                transaction_id=_opt_str(epay.get("transactionId")),
                reference=_opt_str(epay.get("reference")),
                approval_code=_opt_str(epay.get("approvalCode")),
                card_mask=_opt_str(epay.get("cardMask")),
            ),
            next_action=None
            if action is None
            else NextAction(str(action.get("type")), _opt_str(action.get("url"))),
            error=ErrorInfo.from_json(data.get("error")),
            raw=data,
            replayed=replayed,
        )


@dataclass(frozen=True)
class Refund:
    """A refund (`status`: SUCCEEDED, PENDING, FAILED, NEEDS_REVIEW)."""

    id: str
    charge_id: str
    amount: Decimal
    currency: str
    status: str
    reason: str | None
    metadata: Mapping[str, str]
    created_at: datetime
    updated_at: datetime
    error: ErrorInfo | None
    raw: JsonObject = field(repr=False, compare=False)
    replayed: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject, *, replayed: bool = False) -> Refund:
        """Read a refund resource."""
        metadata = _obj(data.get("metadata")) or {}
        return cls(
            id=str(data["id"]),
            charge_id=str(data["chargeId"]),
            amount=_money(data["amount"]),
            currency=str(data["currency"]),
            status=str(data["status"]),
            reason=_opt_str(data.get("reason")),
            metadata={str(k): str(v) for k, v in metadata.items()},
            created_at=_time(data["createdAt"]),
            updated_at=_time(data["updatedAt"]),
            error=ErrorInfo.from_json(data.get("error")),
            raw=data,
            replayed=replayed,
        )


@dataclass(frozen=True)
class Interval:
    """A subscription's billing interval: `unit` day, week, month or year, times `count`."""

    unit: str
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        """The API's `interval` object."""
        return {"unit": self.unit, "count": self.count}


@dataclass(frozen=True)
class Subscription:
    """A subscription (`status`: ACTIVE, PAST_DUE, PAUSED, UNPAID, CANCELLED)."""

    id: str
    status: str
    account_id: str
    card_id: str
    amount: Decimal
    next_amount: Decimal | None
    currency: str
    description: str | None
    interval: Interval
    start_at: datetime
    current_cycle: int
    current_period_start: datetime | None
    current_period_end: datetime | None
    next_charge_at: datetime | None
    attempt: int
    past_due_reason: str | None
    paid_cycles: int
    last_charge_id: str | None
    email: str | None
    phone: str | None
    back_link: str | None
    failure_back_link: str | None
    created_at: datetime
    updated_at: datetime
    paused_at: datetime | None
    canceled_at: datetime | None
    cancel_reason: str | None
    raw: JsonObject = field(repr=False, compare=False)
    replayed: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject, *, replayed: bool = False) -> Subscription:
        """Read a subscription resource."""
        interval = _obj(data.get("interval")) or {}
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            account_id=str(data["accountId"]),
            card_id=str(data["cardId"]),
            amount=_money(data["amount"]),
            next_amount=_opt_money(data.get("nextAmount")),
            currency=str(data["currency"]),
            description=_opt_str(data.get("description")),
            interval=Interval(str(interval.get("unit")), int(interval.get("count", 1))),
            start_at=_time(data["startAt"]),
            current_cycle=int(data.get("currentCycle") or 0),
            current_period_start=_opt_time(data.get("currentPeriodStart")),
            current_period_end=_opt_time(data.get("currentPeriodEnd")),
            next_charge_at=_opt_time(data.get("nextChargeAt")),
            attempt=int(data.get("attempt") or 0),
            past_due_reason=_opt_str(data.get("pastDueReason")),
            paid_cycles=int(data.get("paidCycles") or 0),
            last_charge_id=_opt_str(data.get("lastChargeId")),
            email=_opt_str(data.get("email")),
            phone=_opt_str(data.get("phone")),
            back_link=_opt_str(data.get("backLink")),
            failure_back_link=_opt_str(data.get("failureBackLink")),
            created_at=_time(data["createdAt"]),
            updated_at=_time(data["updatedAt"]),
            paused_at=_opt_time(data.get("pausedAt")),
            canceled_at=_opt_time(data.get("canceledAt")),
            cancel_reason=_opt_str(data.get("cancelReason")),
            raw=data,
            replayed=replayed,
        )


@dataclass(frozen=True)
class Card:
    """A saved card (`status`: ACTIVE, REMOVED; `source`: setup, epay, charge). `id` is the ePay
    card id a charge names."""

    id: str
    account_id: str
    status: str
    mask: str | None
    type: str | None
    issuer: str | None
    source: str | None
    setup_id: str | None
    payment_available: bool | None
    listed_at_epay: bool | None
    created_at: datetime
    updated_at: datetime
    removed_at: datetime | None
    raw: JsonObject = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> Card:
        """Read a card resource."""
        return cls(
            id=str(data["id"]),
            account_id=str(data["accountId"]),
            status=str(data["status"]),
            mask=_opt_str(data.get("mask")),
            type=_opt_str(data.get("type")),
            issuer=_opt_str(data.get("issuer")),
            source=_opt_str(data.get("source")),
            setup_id=_opt_str(data.get("setupId")),
            payment_available=data.get("paymentAvailable"),
            listed_at_epay=data.get("listedAtEpay"),
            created_at=_time(data["createdAt"]),
            updated_at=_time(data["updatedAt"]),
            removed_at=_opt_time(data.get("removedAt")),
            raw=data,
        )


@dataclass(frozen=True)
class CardSetup:
    """A card setup (`status`: PENDING, SUCCEEDED, FAILED, EXPIRED; `mode`: verify, pay). Send
    the customer's browser to `url` (single use, until `expires_at`)."""

    id: str
    status: str
    account_id: str
    mode: str
    amount: Decimal | None
    currency: str | None
    invoice_id: str | None
    url: str | None
    expires_at: datetime | None
    page_opened_at: datetime | None
    card_id: str | None
    card_mask: str | None
    charge_id: str | None
    error: ErrorInfo | None
    created_at: datetime
    updated_at: datetime
    raw: JsonObject = field(repr=False, compare=False)
    replayed: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject, *, replayed: bool = False) -> CardSetup:
        """Read a card setup resource."""
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            account_id=str(data["accountId"]),
            mode=str(data["mode"]),
            amount=_opt_money(data.get("amount")),
            currency=_opt_str(data.get("currency")),
            invoice_id=_opt_str(data.get("invoiceId")),
            url=_opt_str(data.get("url")),
            expires_at=_opt_time(data.get("expiresAt")),
            page_opened_at=_opt_time(data.get("pageOpenedAt")),
            card_id=_opt_str(data.get("cardId")),
            card_mask=_opt_str(data.get("cardMask")),
            charge_id=_opt_str(data.get("chargeId")),
            error=ErrorInfo.from_json(data.get("error")),
            created_at=_time(data["createdAt"]),
            updated_at=_time(data["updatedAt"]),
            raw=data,
            replayed=replayed,
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: `data`, and `next_cursor` for the next page (None on the last)."""

    data: list[T]
    next_cursor: str | None

    @classmethod
    def from_json(cls, body: JsonObject, item: Callable[[JsonObject], T]) -> Page[T]:
        """Read `{"data" | "items": [...], "nextCursor": ...}`."""
        items = body["data"] if "data" in body else body["items"]
        if not isinstance(items, list):
            raise TypeError("a page's data is not a list")
        cursor = body.get("nextCursor")
        return cls([item(entry) for entry in items], None if cursor in (None, "") else str(cursor))
