"""Deadlines for outbound work, budgeted from the Lambda's remaining time."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Deadline:
    """The moment (monotonic seconds) by which outbound work must be finished."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """A deadline `seconds` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())


DEADLINE_SAFETY_SECONDS = 1.0


class HasRemainingTime(Protocol):
    """The part of the Lambda context the deadline needs."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


def deadline_from(context: HasRemainingTime) -> Deadline:
    """Outbound work must end a little before the function's own timeout."""
    seconds = context.get_remaining_time_in_millis() / 1000 - DEADLINE_SAFETY_SECONDS
    return Deadline.after(max(0.0, seconds))
