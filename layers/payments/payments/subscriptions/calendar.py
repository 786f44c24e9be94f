"""Billing intervals and the calendar of cycles (UTC; month ends clamped from the anchor)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from payments.shared.clock import from_iso


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


class Interval(StrEnum):
    """The unit of a billing interval."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


# At most three years between charges, whatever the unit.
MAX_INTERVAL_COUNT = {Interval.DAY: 1095, Interval.WEEK: 156, Interval.MONTH: 36, Interval.YEAR: 3}


# --- calendar ---


@dataclass(frozen=True)
class BillingInterval:
    """Every `count` units."""

    unit: Interval
    count: int

    def __str__(self) -> str:
        return f"{self.count} {self.unit.value}"


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time with an offset (`Z` or `+05:00`) as UTC to the millisecond, or None.

    None too for a time that has no UTC equivalent (year 1 or 9999 shifted past the calendar's
    ends by its offset: `astimezone` raises OverflowError there).
    """
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = from_iso(value)
        if moment.tzinfo is None:
            return None
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
