"""A refund: money given back from a captured charge, exactly once, and its states.

PENDING (reserved on the charge and sent, or about to be; outcome unknown) -> SUCCEEDED (ePay
returned the money) | FAILED (ePay refused, or the request never reached it: the reservation is
released) | NEEDS_REVIEW (ePay's status cannot tell which of several refunds went through: a
person decides; the reservation stays).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from payments.shared.fields import matches


class RefundStatus(StrEnum):
    """Where a refund is."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    NEEDS_REVIEW = "NEEDS_REVIEW"


REFUND_ID_RE = re.compile(r"\Are_[0-9a-f]{32}\Z")
# ePay refuses refunds under 10 tenge (epay-api.md section 5); it documents no other currency's.
MIN_REFUND = {"KZT": Decimal(10)}
DEFAULT_MIN_REFUND = Decimal("0.01")
# A refund whose answer was lost and that ePay's status still does not show this long after it
# was sent did not happen (ePay answers refunds synchronously): it fails and is released.
NOT_SHOWN_FINAL_AGE = timedelta(hours=1)
# The reconciler's ladder for a PENDING refund (after a lost answer).
REFUND_CHECK_LADDER = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
)
REFUND_DUE_SHARDS = 4


def is_refund_id(value: str) -> bool:
    """True for a string shaped like a refund id (anything else is a 404, unread)."""
    return matches(REFUND_ID_RE, value)


def minimum_refund(currency: str) -> Decimal:
    """The smallest refund ePay takes in `currency`."""
    return MIN_REFUND.get(currency, DEFAULT_MIN_REFUND)


@dataclass(frozen=True)
class RefundError:
    """Why a refund failed: ePay's code and message, or ours."""

    code: str
    message: str


@dataclass(frozen=True)
class Refund:
    """One refund of a charge, as stored."""

    id: str
    charge_id: str
    amount: Decimal
    currency: str
    status: RefundStatus
    idempotency_key: str
    request_hash: str
    created_at: datetime
    updated_at: datetime
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    version: int = 1
    error: RefundError | None = None
    next_check_at: datetime | None = None
    check_attempts: int = 0
