"""Invoice ids from a managed suffix space, one per terminal, without a hot key or a cliff.

ePay wants the last six digits of an invoice id unique (epay-api.md sections 2 and 8) and does
not say for how long: we hold each suffix for a window (INVOICE_SUFFIX_WINDOW_DAYS). A terminal
has 1,000,000 suffixes, so it takes 1,000,000 charges per window; several terminals add up.

- **Rings.** A terminal's suffixes are dealt over SHARDS rings by `suffix mod SHARDS`; ring k is
  walked in order by its own counter item, so concurrent creates spread over SHARDS items. Each
  container takes the rings in turn from a random start, so they fill evenly.
- **No cliff.** A ring hands out its slots in order, so the slot at its cursor is the one it
  reserved longest ago: free unless the whole ring was used within the window. A slot held by
  something else (a merchant-supplied invoice id) is skipped; a slot still held by the ring's own
  previous lap means the ring is full until that reservation expires: it is marked full and the
  next ring is tried. Work per charge is bounded (SHARDS rings, MAX_SKIPS foreign holders).
- **Exhaustion.** Every ring full: InvoiceSpaceExhaustedError (503), before any ePay call.
- **Ids.** `<prefix><suffix>`, prefix = lap * MAX_LANES + lane (at least 3 digits). The lane is
  the terminal's number, given once and kept (DynamoInvoiceSpace.lane), so terminals never make
  the same id; the id grows past 9 digits only after a terminal's 10th lap.
- **Share.** Every MARK_EVERY slots a ring writes when it got there; the share of the ring
  reserved within the window follows (to 1/MARKS, rounded up) and is reported per terminal.
- **Blocks** (off: BLOCK is 1). A container can take `block` slots of a ring in one counter
  write and hand them out one per charge, staying on the ring for that many charges (a run).
  Slots a container never used (it stopped) are skipped for that lap, never reserved twice. A
  block is at most a mark segment, taken only where the container last saw a whole block left
  of the ring's first lap (it takes one slot to learn where a ring stands first; others may have
  moved the counter since, so a block can still cross into the next lap, where a held slot sends
  the rest back unless another container took a later one). Still, a block's slots are used
  over the block's life, later than the counter's order says, so a terminal that used its whole
  space found its next lap's slots held past their turn: see BLOCK.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from payments.errors import ConflictError, DuplicateKeyError, InvoiceSpaceExhaustedError
from payments.shared.clock import utc_now

SUFFIX_SPACE = 1_000_000
SHARDS = 16
SLOTS = SUFFIX_SPACE // SHARDS  # slots per ring (tests use smaller rings)
MARKS = 20  # marks per lap of a ring: the reserved share is known to 5%
MARK_RING = 2 * MARKS  # marks kept per ring (two laps), by index mod MARK_RING
MAX_LANES = 100
MAX_SKIPS = 8  # slots held by something else, skipped per request before giving up
# Slots a container takes from a ring in one counter write; never more than a mark segment
# (slots // MARKS), so the ring's order and its reserved share stay known to 1/MARKS. One by
# default: a block's slots are used over the block's life, later than the counter says. With
# blocks of 10, a terminal that had used its whole space found ids for 391 of the 880 charges
# that came while its suffixes freed; one slot at a time, for all 880 (docs/decisions.md).
BLOCK = 1
GUARDS = frozenset({"invoice", "invoice_suffix"})


@dataclass(frozen=True)
class RingSlot:
    """The n-th slot (1-based) a ring of a terminal handed out, and the invoice id it makes."""

    lane: int
    shard: int
    n: int
    slots: int = SLOTS

    @property
    def lap(self) -> int:
        """How many times the ring went round before this slot."""
        return (self.n - 1) // self.slots

    @property
    def suffix(self) -> str:
        """The last six digits."""
        return f"{((self.n - 1) % self.slots) * SHARDS + self.shard:06d}"

    @property
    def invoice_id(self) -> str:
        """The invoice id: prefix (lap and lane) then the suffix."""
        return f"{self.lap * MAX_LANES + self.lane:03d}{self.suffix}"

    @property
    def mark(self) -> int | None:
        """The mark this slot writes (index mod MARK_RING), when it starts a segment."""
        index, every = self.n - 1, self.slots // MARKS
        return (index // every) % MARK_RING if index % every == 0 else None

    def previous_lap(self) -> RingSlot | None:
        """The same slot one lap earlier (None on the first lap)."""
        return replace(self, n=self.n - self.slots) if self.n > self.slots else None


@dataclass(frozen=True)
class RingTicket:
    """A ring's answer to taking its next `count` slots: the counter value after them (the last
    slot taken) and the ring's marks (mark index mod MARK_RING -> epoch seconds when the ring
    reached it), or, while the ring is marked full, until when (and no slot)."""

    n: int
    marks: Mapping[int, int]
    full_until: datetime | None = None
    count: int = 1

    @property
    def first(self) -> int:
        """The first slot taken."""
        return self.n - self.count + 1


@dataclass
class _Run:
    """A container's stay on one ring: `left` more charges take their ids there, first the
    slots it took and has not handed out yet (next_n..last_n), then new ones."""

    shard: int
    next_n: int
    last_n: int
    marks: Mapping[int, int]
    left: int


@dataclass(frozen=True)
class SuffixHolder:
    """Who holds a terminal's suffix, and until when."""

    invoice_id: str
    expires_at: datetime

    @property
    def free_at(self) -> datetime:
        """When the suffix may be taken again: the store compares whole seconds
        (`expiresAt < now`), so from the second after `expires_at`."""
        return self.expires_at.replace(microsecond=0) + timedelta(seconds=1)


def reserved_share(
    n: int, marks: Mapping[int, int], now: datetime, window: timedelta, slots: int = SLOTS
) -> float:
    """The share of a ring reserved within the window, n slots taken, from its marks.

    Slots taken after the first mark of the window are reserved; so may be those of the segment
    before it. Rounded up: a mark not written yet counts as inside the window.
    """
    every = slots // MARKS
    index = n - 1
    newest = index // every
    oldest = max(0, (index - slots) // every + 1)
    since = (now - window).timestamp()
    start = newest * every
    for j in range(oldest, newest + 1):
        at = marks.get(j % MARK_RING)
        if at is None or at >= since:
            start = max(0, (j - 1) * every)
            break
    return min(1.0, (index + 1 - start) / slots)


class InvoiceSpaceStore(Protocol):
    """The rings' counters, their marks and the suffix reservations (one table)."""

    def lane(self, terminal_id: str) -> int:
        """The terminal's lane: given once (the lowest free), then always the same."""
        ...

    def take(self, terminal_id: str, shard: int, now: datetime, count: int = 1) -> RingTicket:
        """Advance a ring's counter by `count`, unless the ring is marked full (`full_until`)."""
        ...

    def mark(self, terminal_id: str, shard: int, mark: int, now: datetime) -> None:
        """Write when a ring reached a mark."""
        ...

    def mark_full(
        self, terminal_id: str, shard: int, n: int, until: datetime, last: int | None = None
    ) -> None:
        """Mark a ring full until `until`, giving slots n..last (last: n when None) back if
        nobody took a later one."""
        ...

    def suffix_holder(self, terminal_id: str, suffix: str) -> SuffixHolder | None:
        """Who holds a suffix of the terminal (the reservation may have expired)."""
        ...


class InvoiceSpaceTelemetry(Protocol):
    """Reports on the suffix space."""

    def space_used(self, terminal_id: str, share: float) -> None:
        """The reserved share of a terminal's ring just used (0..1)."""
        ...

    def space_exhausted(self, terminal_id: str) -> None:
        """Every ring of a terminal is full."""
        ...


class InvoiceAllocator:
    """Finds a free invoice id on a terminal and lets `attempt` write with it."""

    def __init__(
        self,
        store: InvoiceSpaceStore,
        telemetry: InvoiceSpaceTelemetry,
        *,
        window: timedelta,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
        slots: int = SLOTS,
        block: int = BLOCK,
    ) -> None:
        if slots % MARKS or not 0 < slots <= SLOTS:
            raise ValueError(f"slots must be a multiple of {MARKS} up to {SLOTS}")
        if block < 1:
            raise ValueError("block must be at least 1")
        self._slots = slots
        self._block = min(block, slots // MARKS)
        self._runs: dict[str, _Run] = {}  # per terminal: the ring this container stays on
        self._seen: dict[tuple[str, int], int] = {}  # per ring: the last slot this one took
        self._store = store
        self._telemetry = telemetry
        self._window = window
        self._clock = clock
        self._lanes: dict[str, int] = {}
        # Rings are taken in turn from a random start, so each container spreads its charges
        # evenly and containers start apart.
        self._start = int(rand() * SHARDS) % SHARDS
        self._next_ring: dict[str, int] = {}  # per terminal
        self._full: dict[tuple[str, int], datetime] = {}  # rings known full in this container
        self._lock = threading.Lock()

    def allocate[T](self, terminal_id: str, attempt: Callable[[str], T]) -> T:
        """Call `attempt` with free invoice ids of the terminal until one is written.

        `attempt` raises DuplicateKeyError when the id or its suffix is held (any other guard's
        error goes through). Raises InvoiceSpaceExhaustedError when every ring is full.
        """
        lane = self._lane(terminal_id)
        with self._lock:
            held = self._runs.get(terminal_id)
            if held is not None:
                first = held.shard  # the ring of this container's run
            else:
                first = self._next_ring.get(terminal_id, self._start)
                self._next_ring[terminal_id] = (first + 1) % SHARDS
        skips = [0]
        for step in range(SHARDS):
            shard = (first + step) % SHARDS
            written = self._in_ring(terminal_id, lane, shard, attempt, skips)
            if written is not None:
                return written[0]
        if skips[0] > MAX_SKIPS:
            raise ConflictError("no free invoice id was found in bounded work; retry")
        self._telemetry.space_used(terminal_id, 1.0)  # the alarm's metric stays at 100% meanwhile
        self._telemetry.space_exhausted(terminal_id)
        raise InvoiceSpaceExhaustedError(
            "every invoice id of the terminal is reserved; no charge was sent",
            retry_after=self._retry_after(terminal_id),
        )

    def _in_ring[T](
        self,
        terminal_id: str,
        lane: int,
        shard: int,
        attempt: Callable[[str], T],
        skips: list[int],
    ) -> tuple[T] | None:
        """One ring's try: (the written value,), or None when the ring is full or skips ran out."""
        while skips[0] <= MAX_SKIPS:
            now = self._clock()
            with self._lock:
                until = self._full.get((terminal_id, shard))
            if until is not None and until > now:
                return None
            taken = self._next_slot(terminal_id, lane, shard, now)
            if isinstance(taken, datetime):
                self._remember_full(terminal_id, shard, taken)
                return None
            n, last, marks = taken
            slot = RingSlot(lane, shard, n, self._slots)
            self._telemetry.space_used(
                terminal_id, reserved_share(n, marks, now, self._window, self._slots)
            )
            try:
                return (attempt(slot.invoice_id),)
            except DuplicateKeyError as exc:
                if exc.which not in GUARDS:
                    raise
            holder = self._store.suffix_holder(terminal_id, slot.suffix)
            earlier = slot.previous_lap()
            own = (
                earlier is not None
                and holder is not None
                and holder.invoice_id == earlier.invoice_id
            )
            if own and holder is not None and holder.free_at > now:
                # Held by this ring's previous lap: every later slot is younger, the ring is full.
                # The slots of this container's block after it go back with it.
                self._remember_full(terminal_id, shard, holder.free_at)
                self._store.mark_full(terminal_id, shard, slot.n, holder.free_at, last)
                return None
            skips[0] += 1
        return None

    def _next_slot(
        self, terminal_id: str, lane: int, shard: int, now: datetime
    ) -> tuple[int, int, Mapping[int, int]] | datetime:
        """The ring's next slot for this container: (n, the last slot of its block, the ring's
        marks), from the block it holds or from the ring's counter (one write for the rest of
        the container's run there, or for one slot off the first lap; then the mark of a segment
        the block starts, written as the counter reached it: never lost with the block's unused
        slots); or, when the ring is marked full, until when."""
        with self._lock:
            run = self._runs.get(terminal_id)
            if run is None or run.shard != shard:
                run = _Run(shard, 1, 0, {}, self._block)
            if run.next_n <= run.last_n:
                n = run.next_n
                run.next_n += 1
                self._stay(terminal_id, run)
                return n, run.last_n, run.marks
            seen = self._seen.get((terminal_id, shard))
        # A block only where this container saw the ring with a whole block left of its first lap.
        room = seen is not None and seen + self._block <= self._slots
        count = min(self._block, run.left) if room else 1
        ticket = self._store.take(terminal_id, shard, now, count)
        if ticket.full_until is not None:
            return ticket.full_until
        for n in range(ticket.first, ticket.n + 1):
            mark = RingSlot(lane, shard, n, self._slots).mark
            if mark is not None:
                self._store.mark(terminal_id, shard, mark, now)
        with self._lock:
            self._seen[(terminal_id, shard)] = ticket.n
            self._stay(terminal_id, _Run(shard, ticket.first + 1, ticket.n, ticket.marks, run.left))
        return ticket.first, ticket.n, ticket.marks

    def _stay(self, terminal_id: str, run: _Run) -> None:
        """Count one charge of `run`; keep the container on its ring while charges are left."""
        run.left -= 1
        if run.left > 0:
            self._runs[terminal_id] = run
        else:
            self._runs.pop(terminal_id, None)

    def _remember_full(self, terminal_id: str, shard: int, until: datetime) -> None:
        with self._lock:
            self._full[(terminal_id, shard)] = until
            run = self._runs.get(terminal_id)
            if run is not None and run.shard == shard:
                del self._runs[terminal_id]

    def _retry_after(self, terminal_id: str) -> int | None:
        now = self._clock()
        with self._lock:
            untils = [u for (t, _), u in self._full.items() if t == terminal_id and u > now]
        return max(1, math.ceil((min(untils) - now).total_seconds())) if untils else None

    def _lane(self, terminal_id: str) -> int:
        with self._lock:
            lane = self._lanes.get(terminal_id)
        if lane is None:
            lane = self._store.lane(terminal_id)
            with self._lock:
                self._lanes[terminal_id] = lane
        return lane
