"""Time: the real clock and the one ISO-8601 format the service writes and reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def utc_now() -> datetime:
    """The real clock; use cases take a clock so tests can replace it."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """An ISO-8601 UTC timestamp with milliseconds and a Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(value: Any) -> datetime:
    """Read a timestamp written by `iso` (or any ISO-8601 time with an offset or a Z)."""
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def from_iso_or_none(value: Any) -> datetime | None:
    """`from_iso`, or None for a missing (empty) value."""
    return from_iso(value) if value else None
