"""The reconciler's fan-out: each schedule tick sends one unit of work per due shard.

A unit names a kind (charges, refunds, card setups), a shard of its due index and the tick it
belongs to. Each unit is drained by its own invocation, so shards are checked side by side and a
backlog in one never holds another up. Units of one shard form one ordered group on the queue
(one run of a shard at a time), and a tick delivered twice sends the same units (deduplicated).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from payments.errors import ConfigurationError, ValidationError
from payments.shared.clock import from_iso, iso, utc_now

# Checks at once in one shard's run: each holds a DynamoDB and an ePay connection (the clients
# keep 20 a container, payments.bootstrap).
MAX_THREADS = 16
DEFAULT_THREADS = 8
_DEDUP_UNSAFE = re.compile(r"[^A-Za-z0-9:.-]")


class UnitKind(StrEnum):
    """What a unit's shard holds."""

    CHARGES = "charges"
    REFUNDS = "refunds"
    SETUPS = "setups"


@dataclass(frozen=True)
class ReconcileUnit:
    """One shard of one kind, due at one tick (`tick`: when it ran; `tick_key`: the schedule's
    name for it, the same when the tick is delivered twice)."""

    kind: UnitKind
    shard: int
    tick: datetime
    tick_key: str = ""

    def body(self) -> str:
        """The message body."""
        return json.dumps({"kind": self.kind.value, "shard": self.shard, "tick": iso(self.tick)})

    @property
    def group(self) -> str:
        """The queue's ordering group: one run of a shard at a time."""
        return f"{self.kind.value}-{self.shard}"

    @property
    def dedup_id(self) -> str:
        """Equal for the same shard and tick, so a tick delivered twice sends it once."""
        key = _DEDUP_UNSAFE.sub("", self.tick_key or iso(self.tick))[:96]
        return f"{self.group}-{key}"


def parse_unit(body: str) -> ReconcileUnit:
    """A unit from its message body, or ValidationError."""
    try:
        data = json.loads(body)
        unit = ReconcileUnit(UnitKind(data["kind"]), int(data["shard"]), from_iso(data["tick"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValidationError("not a reconcile unit", {"body": "kind, shard, tick"}) from exc
    if unit.shard < 0:
        raise ValidationError("not a reconcile unit", {"shard": "not a shard"})
    return unit


def threads_setting(env: Mapping[str, str]) -> int:
    """RECONCILER_THREADS: checks at once in one shard's run (1..MAX_THREADS, default 8)."""
    raw = (env.get("RECONCILER_THREADS") or str(DEFAULT_THREADS)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_THREADS:
        raise ConfigurationError(f"RECONCILER_THREADS must be 1..{MAX_THREADS}")
    return int(raw)


class DueShards(Protocol):
    """A reconciler whose due index is split in shards (charges, refunds, card setups)."""

    @property
    def shard_count(self) -> int:
        """How many shards its due index has."""
        ...

    def has_due(self, shard: int, now: datetime) -> bool:
        """Whether the index lists something of this shard as due now."""
        ...


class UnitQueue(Protocol):
    """Where units go (payments.aws.reconcile_queue)."""

    def send(self, units: Sequence[ReconcileUnit]) -> None:
        """Enqueue every unit, or raise QueueUnavailableError."""
        ...


@dataclass(frozen=True)
class TickReport:
    """What one tick sent, and how many shards it looked at."""

    units: tuple[ReconcileUnit, ...]
    probed: int


class ReconcileFanOut:
    """The scheduled tick: finds the shards with something due and sends a unit for each."""

    def __init__(
        self,
        *,
        sources: Mapping[UnitKind, DueShards],
        queue: UnitQueue,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sources = sources
        self._queue = queue
        self._clock = clock

    def tick(self, key: str = "") -> TickReport:
        """Probe every shard (one keys-only query each) and enqueue the due ones; `key` names
        the tick (the schedule's time of it), so a tick delivered twice sends them once."""
        now = self._clock()
        units = [
            ReconcileUnit(kind, shard, now, key)
            for kind, source in self._sources.items()
            for shard in range(source.shard_count)
            if source.has_due(shard, now)
        ]
        if units:
            self._queue.send(units)
        probed = sum(source.shard_count for source in self._sources.values())
        return TickReport(tuple(units), probed)
