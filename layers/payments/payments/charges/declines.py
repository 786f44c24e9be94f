"""What a decline means for retrying. Which ePay code is which category is ePay's vocabulary:
the adapter reads it (payments.epay.codes) and hands the category over with its answers."""

from __future__ import annotations

from enum import StrEnum


class DeclineCategory(StrEnum):
    """What a decline means for retrying (dunning reads it from `charge.error.category`)."""

    HARD = "hard"  # lost, stolen, expired, restricted, no such card: never retry
    SOFT = "soft"  # funds, limits, issuer unavailable, try later
    AUTHENTICATION = "authentication"  # 3-D Secure failed or required
    OTHER = "other"
