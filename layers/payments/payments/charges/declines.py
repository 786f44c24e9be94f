"""What an ePay decline code means for retrying (epay-api.md section 7)."""

from __future__ import annotations

from enum import StrEnum


class DeclineCategory(StrEnum):
    """What a decline means for retrying (epay-api.md section 7)."""

    HARD = "hard"
    SOFT = "soft"
    AUTHENTICATION = "authentication"
    OTHER = "other"


_HARD = {465, 467, 471, 472, 478, 479, 481, 482, 483, 485, 489, 490}
_SOFT = {456, 458, 459, 484, 488, 491, 493, 494, 497}
_AUTHENTICATION = {455, 468, 473, 496}


def decline_category(code: int | None) -> DeclineCategory:
    """Classify an ePay decline code; unlisted codes are `other`."""
    if code in _HARD:
        return DeclineCategory.HARD
    if code in _SOFT:
        return DeclineCategory.SOFT
    if code in _AUTHENTICATION:
        return DeclineCategory.AUTHENTICATION
    return DeclineCategory.OTHER
