"""Invoice suffix space through exhaustion on DynamoDB Local (a benchmark, not a test).

Drives `payments.charges.invoices.InvoiceAllocator` and the real create transaction
(`DynamoChargeStore.create`: charge, idempotency key, invoice id, the terminal's suffix
reservation, history) until every suffix of every terminal is reserved, with a test clock that
both of them read: charge k of a scenario arrives k / --per-day days after the start, so a
400-day window passes in minutes. Each worker thread is one "container" (its own boto3 client,
stores and allocator, as a Lambda container has), and a charge tries the terminals in the order
`charges.terminals.route` draws them (weights 1), falling through to the next terminal when one
is full, as ChargeService does.

Per scenario it prints: charges written, wall seconds, charges/s; failures while space remained
(any error other than InvoiceSpaceExhaustedError, a suffix handed out twice, or an exhausted answer
for a terminal the bench's own ledger says is not full); per terminal, the charge and test-clock
day at which the reported reserved share first reached --alarm-percent; the answer at true
exhaustion (HTTP status, code, retry_after) and what it cost in DynamoDB calls (the call that
found it, the same container again, a new container); the rings' counters and fullUntil once
full (read directly); a retry after retry_after (and 1 s later); a "retry storm" (every container
at once, 2 s after a suffix frees); DynamoDB calls per charge, counted by a thin proxy over each
container's client; with --after-days, how charges fare once suffixes expire. It never fails on
a number.

The full space is 16 rings x 62,500 slots = 1,000,000 suffixes per terminal; DynamoDB Local on a
2-core machine writes about 140 charges a second (its JVM takes a core), so `--slots` (per ring,
a multiple of 20) shrinks the space for a run that shows the same behaviour; the output states
the size used. `--slots 6000 --after-days 20` (96,000 suffixes per terminal) takes about an hour.

    PYTHONPATH=layers/payments:. .venv/bin/python bench/invoice_space_bench.py \
        [--slots 62500] [--terminals 1,4] [--workers 8] [--window-days 400] [--per-day N] \
        [--after-days 0] [--smoke]
"""

from __future__ import annotations

import argparse
import bisect
import functools
import random
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from local.aws import create_resources
from local.dynamodb_local import DynamoDBLocal
from local.template import load_template, resources_of_type
from payments.aws.charge_store import DynamoChargeStore
from payments.aws.invoice_space import DynamoInvoiceSpace
from payments.charges.invoices import (
    BLOCK,
    MARKS,
    SHARDS,
    SLOTS,
    SUFFIX_SPACE,
    InvoiceAllocator,
)
from payments.charges.model import (
    PROCESSING_SAFE_AGE,
    CaptureMode,
    Charge,
    ChargeStatus,
    HistoryEntry,
    Source,
    secret_hash_digest,
)
from payments.charges.terminals import Purpose, Terminal, route
from payments.errors import InvoiceSpaceExhaustedError

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2030, 1, 1, tzinfo=UTC)  # test time; DynamoDB Local's TTL never sees it pass
DAY = timedelta(days=1)
SMOKE_SLOTS = MARKS  # the smallest ring the allocator takes
REFUSALS = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException"})
# No retries: a throttle or a timeout shows as a failure instead of being hidden (or turning a
# written transaction into a spurious "already taken" on its retry).
CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=60,
    retries={"total_max_attempts": 1, "mode": "standard"},
    max_pool_connections=4,
)


@dataclass(frozen=True)
class Settings:
    """One run's sizes."""

    slots: int  # per ring
    window_days: int
    per_day: float  # charges per test-clock day, all terminals of a scenario together
    workers: int
    alarm: float  # 0..1
    progress_seconds: float
    seed: int
    block: int = BLOCK  # slots a container takes from a ring in one counter write

    @property
    def space(self) -> int:
        """Suffixes per terminal."""
        return SHARDS * self.slots

    @property
    def window(self) -> timedelta:
        """How long a suffix stays reserved."""
        return timedelta(days=self.window_days)


# --------------------------------------------------------------------------- test clock


class ArrivalClock:
    """Test time: the k-th charge of a scenario arrives k / per_day days after START.

    The allocator, the charge store and the charges all read it; `jump` moves it on by a span.
    """

    def __init__(self, per_day: float) -> None:
        self._step = DAY / per_day
        self._arrivals = 0
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def arrive(self) -> int:
        """One more charge arrives: its number (1-based)."""
        with self._lock:
            self._arrivals += 1
            return self._arrivals

    @property
    def arrivals(self) -> int:
        """Charges arrived so far."""
        return self._arrivals

    def __call__(self) -> datetime:
        return START + self._offset + self._step * self._arrivals

    def day(self) -> float:
        """Test-clock days since START."""
        return (self() - START) / DAY

    def jump(self, span: timedelta) -> None:
        """Move test time on by `span` (no charge arrives meanwhile)."""
        with self._lock:
            self._offset += span


# --------------------------------------------------------------------------- counting client


class CountingClient:
    """A boto3 DynamoDB client that counts every call by method, and the calls DynamoDB refused
    (a failed condition, a cancelled transaction) or failed otherwise. One container's thread
    uses it at a time, so plain counters do."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.total = 0
        self.total_refused = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            self.total += 1
            try:
                return method(*args, **kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code", "") in REFUSALS:
                    self.refused[name] += 1
                    self.total_refused += 1
                else:
                    self.errors[name] += 1
                raise

        return counted

    def snapshot(self) -> tuple[int, int]:
        """(calls, refused calls) so far."""
        return self.total, self.total_refused


# DynamoDB Local takes any credentials; these never leave this machine.
LOCAL_ONLY = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


def new_client(endpoint: str) -> CountingClient:
    """A counted client of DynamoDB Local."""
    client = boto3.session.Session().client(
        "dynamodb", endpoint_url=endpoint, config=CLIENT_CONFIG, **LOCAL_ONLY
    )
    return CountingClient(client)


def create_table(endpoint: str, stack_name: str) -> str:
    """The template's charges table (only the tables of template.yaml), made by local.aws."""
    template = load_template(ROOT / "template.yaml")
    tables_only = {**template, "Resources": resources_of_type(template, "AWS::DynamoDB::Table")}
    client = new_client(endpoint)
    names = create_resources(tables_only, {"dynamodb": client}, stack_name=stack_name)
    return names["PaymentsTable"]


# --------------------------------------------------------------------------- what the bench knows


@dataclass
class Alarm:
    """When the reported share of a terminal first reached the alarm threshold."""

    charges: int  # the terminal's charges written by then
    day: float
    reported: float
    true_share: float


class Ledger:
    """The bench's own account of each terminal's space: suffixes written and when each frees,
    writes in flight, and any suffix handed out twice (none may be while nothing has expired).

    Until `expiring()`, every write is of a suffix's first lap; after it, the free suffixes of a
    terminal are those of the first lap whose reservation ended (`expiresAt < now`, the create
    transaction's own condition) less the writes made since.
    """

    def __init__(self, terminals: Sequence[str], space: int) -> None:
        self.space = space
        self.held = dict.fromkeys(terminals, 0)
        self.pending = dict.fromkeys(terminals, 0)
        self.rewritten = dict.fromkeys(terminals, 0)  # writes once suffixes expire
        self.repeats: list[tuple[str, str]] = []
        self.outside: list[tuple[str, str]] = []  # a suffix beyond the space size used
        self._seen = {t: bytearray(SUFFIX_SPACE) for t in terminals}
        self._frees: dict[str, list[int]] = {t: [] for t in terminals}  # epoch s, first lap
        self._lock = threading.Lock()
        self.checking = True  # first lap: nothing has expired

    def begin(self, terminal: str) -> None:
        """A write with a slot of `terminal` starts."""
        with self._lock:
            self.pending[terminal] += 1

    def end(self, terminal: str, invoice_id: str | None, expires: int = 0) -> None:
        """The write ended: `invoice_id` written (reserved until `expires`), or refused (None)."""
        with self._lock:
            self.pending[terminal] -= 1
            if invoice_id is None:
                return
            self.held[terminal] += 1
            if not self.checking:
                self.rewritten[terminal] += 1
                return
            self._frees[terminal].append(expires)
            suffix = int(invoice_id[-6:])
            if suffix >= self.space:
                self.outside.append((terminal, invoice_id))
            elif self._seen[terminal][suffix]:
                self.repeats.append((terminal, invoice_id))
            else:
                self._seen[terminal][suffix] = 1

    def expiring(self) -> None:
        """From now on reservations may have expired: stop checking for repeats."""
        with self._lock:
            self.checking = False
            for frees in self._frees.values():
                frees.sort()

    def share(self, terminal: str) -> float:
        """The share of the terminal's space written (first lap)."""
        return self.held[terminal] / self.space

    def full(self, terminal: str) -> bool:
        """Every suffix of the terminal written or being written (first lap)."""
        with self._lock:
            return self.held[terminal] + self.pending[terminal] >= self.space

    def free(self, terminal: str, now: datetime) -> int:
        """Suffixes of the terminal free at `now` and not being written (after `expiring`)."""
        with self._lock:
            if self.checking:
                return self.space - self.held[terminal] - self.pending[terminal]
            ended = bisect.bisect_left(self._frees[terminal], int(now.timestamp()))
            return ended - self.rewritten[terminal] - self.pending[terminal]

    def next_frees(self, after: int) -> int | None:
        """When the next first-lap suffix of any terminal frees after `after` (epoch s)."""
        with self._lock:
            nexts = [
                f[i] for f in self._frees.values() if (i := bisect.bisect_right(f, after)) < len(f)
            ]
            return min(nexts) if nexts else None

    def first_frees(self, terminal: str) -> int | None:
        """When the terminal's first suffix frees (epoch s)."""
        with self._lock:
            frees = self._frees[terminal]
            return min(frees) if frees else None


class RecordingTelemetry:
    """The allocator's telemetry port: remembers when each terminal's reported share first
    reached the threshold, the highest share reported, and the exhausted reports."""

    def __init__(self, clock: ArrivalClock, ledger: Ledger, threshold: float) -> None:
        self._clock = clock
        self._ledger = ledger
        self._threshold = threshold
        self._lock = threading.Lock()
        self.alarms: dict[str, Alarm] = {}
        self.highest: dict[str, float] = {}
        self.exhausted: Counter[str] = Counter()
        self.first_exhausted_day: dict[str, float] = {}

    def space_used(self, terminal_id: str, share: float) -> None:
        """The reserved share of the terminal's ring just used."""
        with self._lock:
            self.highest[terminal_id] = max(share, self.highest.get(terminal_id, 0.0))
            if share >= self._threshold and terminal_id not in self.alarms:
                self.alarms[terminal_id] = Alarm(
                    self._ledger.held[terminal_id],
                    self._clock.day(),
                    share,
                    self._ledger.share(terminal_id),
                )

    def space_exhausted(self, terminal_id: str) -> None:
        """Every ring of the terminal is full."""
        with self._lock:
            self.exhausted[terminal_id] += 1
            self.first_exhausted_day.setdefault(terminal_id, self._clock.day())


# --------------------------------------------------------------------------- one container


@dataclass(frozen=True)
class Answer:
    """One charge's outcome: written on a terminal, or every terminal exhausted."""

    terminal: str | None
    invoice_id: str | None
    exhausted: InvoiceSpaceExhaustedError | None
    premature: int  # exhausted answers for a terminal the ledger did not see full
    free: int = 0  # with a 503: suffixes of the terminals the ledger saw free then
    calls: int = 0
    refused: int = 0


class Container:
    """One Lambda container: its own counted client, charge store, space and allocator."""

    def __init__(
        self,
        endpoint: str,
        table: str,
        clock: ArrivalClock,
        telemetry: RecordingTelemetry,
        settings: Settings,
        seed: int,
    ) -> None:
        self.client = new_client(endpoint)
        self._clock = clock
        self._window = settings.window
        self._store_now = START  # what the store's clock said last (its expiresAt follows)
        self._store = DynamoChargeStore(
            table, self.client, clock=self._store_clock, invoice_suffix_ttl=settings.window
        )
        rng = random.Random(seed)
        self._rand = rng.random
        self.allocator = InvoiceAllocator(
            DynamoInvoiceSpace(table, self.client),
            telemetry,
            window=settings.window,
            clock=clock,
            rand=rng.random,
            slots=settings.slots,
            block=settings.block,
        )

    def _store_clock(self) -> datetime:
        self._store_now = self._clock()
        return self._store_now

    def charge(self, terminals: Sequence[Terminal], ledger: Ledger) -> Answer:
        """One charge as ChargeService makes it: the terminals in route order, each one's space;
        counted (calls and refused calls it cost)."""
        calls, refused = self.client.snapshot()
        answer = self._charge(terminals, ledger)
        after_calls, after_refused = self.client.snapshot()
        now = self._clock()
        free = 0 if answer.exhausted is None else sum(ledger.free(t.id, now) for t in terminals)
        return Answer(
            answer.terminal,
            answer.invoice_id,
            answer.exhausted,
            answer.premature,
            max(0, free),
            after_calls - calls,
            after_refused - refused,
        )

    def _charge(self, terminals: Sequence[Terminal], ledger: Ledger) -> Answer:
        exhausted: InvoiceSpaceExhaustedError | None = None
        premature = 0
        for terminal in route(terminals, Purpose.CIT, self._rand):
            write = functools.partial(self._write, terminal.id, ledger)
            try:
                invoice_id = self.allocator.allocate(terminal.id, write)
            except InvoiceSpaceExhaustedError as exc:
                exhausted = exhausted or exc
                premature += 0 if ledger.full(terminal.id) else 1
                continue
            return Answer(terminal.id, invoice_id, None, premature)
        return Answer(None, None, exhausted, premature)

    def _write(self, terminal_id: str, ledger: Ledger, invoice_id: str) -> str:
        """The allocator's attempt: the create transaction, as ChargeService._write builds it."""
        now = self._clock()
        token = secrets.token_hex(16)
        charge = Charge(
            id=f"ch_{token}",
            invoice_id=invoice_id,
            status=ChargeStatus.PROCESSING,
            amount=Decimal("1500.50"),
            currency="KZT",
            account_id=f"customer-{token[:8]}",
            card_id="c0000000-0000-4000-8000-000000000001",
            description="Order 42",
            capture=CaptureMode.AUTO,
            recurrent=False,
            language="rus",
            idempotency_key=f"bench-{token}",
            request_hash=token * 2,
            secret_hash_digest=secret_hash_digest(token),
            created_at=now,
            updated_at=now,
            next_check_at=now + PROCESSING_SAFE_AGE,
            terminal_id=terminal_id,
        )
        ledger.begin(terminal_id)
        written: str | None = None
        try:
            self._store.create(charge, HistoryEntry(None, ChargeStatus.PROCESSING, now, Source.API))
            written = invoice_id
        finally:
            expires = int((self._store_now + self._window).timestamp())
            ledger.end(terminal_id, written, expires)
        return invoice_id


# --------------------------------------------------------------------------- one phase


@dataclass
class Phase:
    """What a run of the workers saw."""

    arrivals: int = 0
    written: int = 0
    exhausted: int = 0  # charges answered 503 (every terminal full)
    premature: int = 0  # a terminal answered exhausted while the ledger saw it not full
    starved: int = 0  # 503 answers while the ledger saw free suffixes
    most_free: int = 0  # the most free suffixes the ledger saw at a 503
    failures: Counter[str] = field(default_factory=Counter)
    first: Answer | None = None
    first_day: float = 0.0
    first_by: Container | None = None
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, answer: Answer, container: Container, day: float) -> bool:
        """Count one answer; True when it is the first exhausted one (the run stops there)."""
        with self.lock:
            self.premature += answer.premature
            if answer.exhausted is None:
                self.written += 1
                return False
            self.exhausted += 1
            self.starved += 1 if answer.free > 0 else 0
            self.most_free = max(self.most_free, answer.free)
            if self.first is None:
                self.first, self.first_day, self.first_by = answer, day, container
                return True
            return False

    def fail(self, exc: Exception) -> None:
        """An error other than exhaustion."""
        with self.lock:
            self.failures[f"{type(exc).__name__}: {exc}"[:120]] += 1


class Workload:
    """One scenario's terminals, containers, clock and ledger on one table."""

    def __init__(self, endpoint: str, table: str, terminals: int, settings: Settings) -> None:
        self.settings = settings
        self.terminals = [
            Terminal(f"7e570000-0000-4000-8000-{n:012d}", frozenset({Purpose.CIT}), 1)
            for n in range(1, terminals + 1)
        ]
        ids = [t.id for t in self.terminals]
        self.clock = ArrivalClock(settings.per_day)
        self.ledger = Ledger(ids, settings.space)
        self.telemetry = RecordingTelemetry(self.clock, self.ledger, settings.alarm)
        self._endpoint, self._table = endpoint, table
        self.containers = [self.container(n) for n in range(settings.workers)]

    def container(self, n: int) -> Container:
        """Container n (a new one for n beyond the workers)."""
        return Container(
            self._endpoint,
            self._table,
            self.clock,
            self.telemetry,
            self.settings,
            self.settings.seed * 1000 + n,
        )

    def run(self, arrivals: int | None, stop_on_exhaustion: bool, workers: int = 0) -> Phase:
        """Charges from the first `workers` containers (0: all) until the first 503 (or
        `arrivals` more charges)."""
        phase = Phase()
        stop = threading.Event()
        limit = self.clock.arrivals + (arrivals or 4 * len(self.terminals) * self.settings.space)
        threads = [
            threading.Thread(
                target=self._work, args=(c, phase, stop, limit, stop_on_exhaustion), daemon=True
            )
            for c in self.containers[: workers or None]
        ]
        started = time.perf_counter()
        reporter = threading.Thread(target=self._progress, args=(phase, stop, started), daemon=True)
        for thread in [*threads, reporter]:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        reporter.join()
        phase.seconds = time.perf_counter() - started
        return phase

    def _work(
        self, container: Container, phase: Phase, stop: threading.Event, limit: int, halt: bool
    ) -> None:
        while not stop.is_set():
            if self.clock.arrive() > limit:
                stop.set()
                return
            with phase.lock:
                phase.arrivals += 1
            try:
                answer = container.charge(self.terminals, self.ledger)
            except Exception as exc:  # every other error is a failure, counted and shown
                phase.fail(exc)
                continue
            if phase.record(answer, container, self.clock.day()) and halt:
                stop.set()

    def _progress(self, phase: Phase, stop: threading.Event, started: float) -> None:
        every = self.settings.progress_seconds
        while every > 0 and not stop.wait(every):
            elapsed = time.perf_counter() - started
            shares = " ".join(f"{self.ledger.share(t.id):.1%}" for t in self.terminals)
            print(
                f"  ... {elapsed:.0f} s: {phase.written} written ({phase.written / elapsed:.0f}/s),"
                f" day {self.clock.day():.1f}, shares {shares}, failures "
                f"{sum(phase.failures.values())}",
                flush=True,
            )


# --------------------------------------------------------------------------- a scenario


@dataclass
class Probe:
    """One charge asked for on purpose, and what it cost."""

    label: str
    answer: Answer


@dataclass
class Result:
    """What one scenario measured."""

    terminals: list[str]
    fill: Phase
    held: dict[str, int]
    alarms: dict[str, Alarm]
    highest: dict[str, float]
    first_exhausted_day: dict[str, float]
    exhausted_reports: Counter[str]
    repeats: int
    outside: int
    calls: Counter[str]
    refused: Counter[str]
    errors: Counter[str]
    probes: list[Probe]
    after: Phase | None
    audits: dict[str, RingAudit]
    first_frees_in: float | None  # seconds from the first 503 until a suffix really frees
    free_left: int  # free suffixes nobody was given when the after-expiry phase ended
    storm: Storm | None


def run_scenario(
    endpoint: str, terminals: int, settings: Settings, after_days: float, after_workers: int
) -> Result:
    """Fill every terminal to exhaustion, then ask again (same container, new container), then
    after retry_after, then (with after_days) keep charging once suffixes expire."""
    table = create_table(endpoint, f"inv{terminals}t{secrets.token_hex(4)}")
    load = Workload(endpoint, table, terminals, settings)
    fill = load.run(None, stop_on_exhaustion=True)
    held = dict(load.ledger.held)
    calls, refused, errors = Counter[str](), Counter[str](), Counter[str]()
    for container in load.containers:
        calls += container.client.calls
        refused += container.client.refused
        errors += container.client.errors
    audits = {t.id: audit_rings(endpoint, table, t.id, settings.slots) for t in load.terminals}
    probes = probe_exhaustion(load, fill)
    storm = retry_storm(load, endpoint, table) if fill.first is not None else None
    frees = [f for f in (load.ledger.first_frees(t.id) for t in load.terminals) if f is not None]
    first_at = START + DAY * fill.first_day
    frees_in = min(frees) - first_at.timestamp() if frees and fill.first else None
    after, free_left = None, 0
    if after_days > 0 and fill.first is not None:
        load.clock.jump(DAY)  # a day of expired suffixes ahead of the arrivals
        after = load.run(round(after_days * settings.per_day), False, after_workers)
        free_left = sum(load.ledger.free(t.id, load.clock()) for t in load.terminals)
    return Result(
        [t.id for t in load.terminals],
        fill,
        held,
        dict(load.telemetry.alarms),
        dict(load.telemetry.highest),
        dict(load.telemetry.first_exhausted_day),
        Counter(load.telemetry.exhausted),
        len(load.ledger.repeats),
        len(load.ledger.outside),
        calls,
        refused,
        errors,
        probes,
        after,
        audits,
        frees_in,
        free_left,
        storm,
    )


def probe_exhaustion(load: Workload, fill: Phase) -> list[Probe]:
    """Once full: the same container again, a new container, then retry after retry_after."""
    if fill.first is None or fill.first_by is None or fill.first.exhausted is None:
        return []
    warm = fill.first_by
    probes = [
        Probe("first 503 of the run", fill.first),
        Probe("same container again", warm.charge(load.terminals, load.ledger)),
        Probe("new container", load.container(10_000).charge(load.terminals, load.ledger)),
    ]
    retry_after = fill.first.exhausted.retry_after
    if retry_after is not None:
        load.ledger.expiring()  # suffixes start to expire
        load.clock.jump(timedelta(seconds=retry_after))
        probes.append(
            Probe("retry_after later", warm.charge(load.terminals, load.ledger)),
        )
        if probes[-1].answer.exhausted is not None:
            load.clock.jump(timedelta(seconds=1))
            probes.append(
                Probe("retry_after + 1 s later", warm.charge(load.terminals, load.ledger)),
            )
    return probes


# --------------------------------------------------------------------------- rings at exhaustion


@dataclass(frozen=True)
class RingAudit:
    """The rings of one terminal once it is full, read outside the counted clients."""

    marked_full: int
    past_lap_end: int  # rings whose counter went past slot `slots` and stayed there
    skipped: int  # suffixes those rings will pass over on their next lap though free
    late: int  # rings marked full beyond the moment their oldest suffix frees
    late_days: float  # the most any such ring waits too long


def audit_rings(endpoint: str, table: str, terminal: str, slots: int) -> RingAudit:
    """Each ring's counter and fullUntil against its oldest suffix (its first slot: suffix =
    ring number) and when that one frees."""
    client = new_client(endpoint)
    marked = past = skipped = late = 0
    worst = 0.0
    for shard in range(SHARDS):
        ring = client.get_item(
            TableName=table,
            Key={"pk": {"S": f"INVOICE_RING#{terminal}#{shard:02d}"}, "sk": {"S": "RING"}},
            ConsistentRead=True,
        ).get("Item", {})
        oldest = client.get_item(
            TableName=table,
            Key={
                "pk": {"S": f"INVOICE_SUFFIX#{terminal}#{shard:06d}"},
                "sk": {"S": "INVOICE_SUFFIX"},
            },
            ConsistentRead=True,
        ).get("Item", {})
        n = int(ring.get("n", {}).get("N", "0"))
        until = int(ring.get("fullUntil", {}).get("N", "0"))
        frees = int(oldest.get("expiresAt", {}).get("N", "0"))
        marked += 1 if until else 0
        if n > slots:
            past += 1
            skipped += n - slots
        if until > frees:
            late += 1
            worst = max(worst, (until - frees) / 86400)
    return RingAudit(marked, past, skipped, late, worst)


@dataclass(frozen=True)
class Storm:
    """Every container asked for a charge at the same moment, just after a suffix freed."""

    clients: int
    free: int  # suffixes the ledger saw free then
    written: int
    calls: int
    refused: int
    advanced: int  # how far the rings' counters moved on, all together


def ring_counters(endpoint: str, table: str, terminals: Sequence[str]) -> int:
    """The sum of every ring counter of the terminals (read outside the counted clients)."""
    client = new_client(endpoint)
    total = 0
    for terminal in terminals:
        for shard in range(SHARDS):
            item = client.get_item(
                TableName=table,
                Key={"pk": {"S": f"INVOICE_RING#{terminal}#{shard:02d}"}, "sk": {"S": "RING"}},
                ConsistentRead=True,
            ).get("Item", {})
            total += int(item.get("n", {}).get("N", "0"))
    return total


def retry_storm(load: Workload, endpoint: str, table: str) -> Storm | None:
    """Clients told the same retry_after come back together: 2 s after the next suffix frees
    (past the one-second edge of `expiresAt < now`), every container asks for one charge at
    the same test-clock moment."""
    now = load.clock().timestamp()
    frees = load.ledger.next_frees(int(now) + 1)
    if frees is None:
        return None
    load.clock.jump(timedelta(seconds=frees + 2 - now))
    moment = load.clock()
    free = sum(load.ledger.free(t.id, moment) for t in load.terminals)
    ids = [t.id for t in load.terminals]
    before = ring_counters(endpoint, table, ids)
    answers: list[Answer] = []
    gate = threading.Barrier(len(load.containers))

    def ask(container: Container) -> None:
        gate.wait()
        answers.append(container.charge(load.terminals, load.ledger))

    threads = [threading.Thread(target=ask, args=(c,)) for c in load.containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Storm(
        len(load.containers),
        free,
        sum(1 for a in answers if a.exhausted is None),
        sum(a.calls for a in answers),
        sum(a.refused for a in answers),
        ring_counters(endpoint, table, ids) - before,
    )


# --------------------------------------------------------------------------- report


def answer_text(answer: Answer) -> str:
    """ "503 invoice_space_exhausted retry_after N s (D d)" or "written 000012345 on t1"."""
    exc = answer.exhausted
    if exc is None:
        return f"written {answer.invoice_id} on terminal {short(answer.terminal or '')}"
    seconds = exc.retry_after
    after = "none" if seconds is None else f"{seconds} s ({seconds / 86400:.1f} d)"
    free = f" [{answer.free} suffixes were free]" if answer.free else ""
    return f"{exc.http_status} {exc.code} retry_after {after}{free}"


def short(terminal_id: str) -> str:
    """t<n> for the bench's terminal ids."""
    return f"t{int(terminal_id.rsplit('-', 1)[-1])}"


def per_charge(result: Result) -> dict[str, float]:
    """DynamoDB calls per written charge during the fill."""
    n = max(1, result.fill.written)
    return {
        "counter updates": result.calls["update_item"] / n,
        "refused updates": result.refused["update_item"] / n,
        "transactions": result.calls["transact_write_items"] / n,
        "refused transactions": result.refused["transact_write_items"] / n,
        "reads": result.calls["get_item"] / n,
    }


def print_scenario(name: str, result: Result, settings: Settings) -> None:
    """Every figure of one scenario, one per line."""
    fill = result.fill
    space = settings.space
    rate = fill.written / fill.seconds if fill.seconds else 0.0
    failures = sum(fill.failures.values()) + fill.premature + result.repeats + result.outside
    print(f"scenario {name}")
    print(f"  allocations done                {fill.written}")
    print(f"  charges asked for               {fill.arrivals}")
    print(f"  wall seconds                    {fill.seconds:.1f}")
    print(f"  allocations per second          {rate:.1f}")
    print(f"  failures while space remained   {failures}")
    print(f"    errors other than exhaustion  {dict(fill.failures) or 0}")
    print(f"    503 while the ledger not full {fill.premature}")
    print(f"    suffix handed out twice       {result.repeats}")
    print(f"    suffix beyond the space       {result.outside}")
    print(f"    DynamoDB errors (not refusals) {dict(result.errors) or 0}")
    for terminal in result.terminals:
        held = result.held[terminal]
        alarm = result.alarms.get(terminal)
        alarm_text = (
            "never"
            if alarm is None
            else f"charge {alarm.charges} on day {alarm.day:.1f} (reported {alarm.reported:.1%},"
            f" true {alarm.true_share:.1%})"
        )
        full_day = result.first_exhausted_day.get(terminal)
        print(
            f"  terminal {short(terminal)}: held {held} of {space} ({held / space:.2%}),"
            f" alarm {settings.alarm:.0%} at {alarm_text},"
            f" highest reported {result.highest.get(terminal, 0.0):.1%},"
            f" full on day {'never' if full_day is None else f'{full_day:.1f}'}"
            f" (space_exhausted reported {result.exhausted_reports[terminal]} times)"
        )
    print(f"  space held before exhaustion    {sum(result.held.values())}")
    for terminal, audit in result.audits.items():
        print(
            f"  rings of {short(terminal)} when full: {audit.marked_full}/{SHARDS} marked full,"
            f" {audit.past_lap_end} past their lap end ({audit.skipped} free suffixes to be"
            f" skipped next lap), {audit.late} marked full beyond their oldest suffix's expiry"
            f" (by up to {audit.late_days:.2f} d)"
        )
    if fill.first is None:
        print("  exhausted answer                none (the run stopped first)")
    else:
        print(f"  true exhaustion on day          {fill.first_day:.1f}")
        print(f"  exhausted answer                {answer_text(fill.first)}")
        if result.first_frees_in is not None:
            print(
                f"  first suffix really frees in    {result.first_frees_in:.0f} s"
                f" ({result.first_frees_in / 86400:.1f} d) after that 503"
            )
    for probe in result.probes:
        a = probe.answer
        print(
            f"  cost: {probe.label:<24} {a.calls} DynamoDB calls, {a.refused} refused"
            f"  -> {answer_text(a)}"
        )
    storm = result.storm
    if storm is not None:
        print(
            f"  retry storm: {storm.clients} containers at once, 2 s after a suffix freed"
            f" ({storm.free} free): {storm.written} written, {storm.clients - storm.written}"
            f" answered 503, {storm.calls} DynamoDB calls ({storm.refused} refused); ring"
            f" counters moved on by {storm.advanced}, so {storm.advanced - storm.written} free"
            " suffixes are passed over until their ring comes round again"
        )
    costs = per_charge(result)
    print(
        "  store calls per allocation      "
        + ", ".join(f"{label} {value:.3f}" for label, value in costs.items())
    )
    print(f"  calls by method (fill)          {dict(sorted(result.calls.items()))}")
    print(f"  refused by method (fill)        {dict(sorted(result.refused.items()))}")
    if result.after is not None:
        print_after(result.after, result.free_left)


def print_after(after: Phase, free_left: int) -> None:
    """The phase after the first suffixes expired (a day of them ahead of the arrivals)."""
    rate = after.written / after.seconds if after.seconds else 0.0
    print(
        f"  after expiry: {after.arrivals} asked, {after.written} written, {after.exhausted}"
        f" answered 503 ({after.starved} of them while suffixes were free, up to"
        f" {after.most_free}), free suffixes never given out at the end {free_left},"
        f" failures {sum(after.failures.values())} {dict(after.failures) or ''}, {rate:.0f}/s"
    )


def after_text(after: Phase | None) -> str:
    """written/asked once suffixes expire, or "-"."""
    return "-" if after is None else f"{after.written}/{after.arrivals}"


def print_table(results: list[tuple[int, Result]], settings: Settings) -> None:
    """One row per scenario."""
    print()
    print(
        f"space: {SHARDS} rings x {settings.slots} slots = {settings.space} suffixes per terminal"
        f" (blocks of {settings.block})"
        f" ({settings.space / SUFFIX_SPACE:.2%} of the real {SUFFIX_SPACE:,}),"
        f" window {settings.window_days} d, {settings.per_day:g} charges/day in all,"
        f" {settings.workers} workers"
    )
    header = (
        f"{'terminals':>9} {'held':>9} {'x 1 term':>8} {'wall s':>8} {'alloc/s':>8}"
        f" {'fail':>5} {'alarm day':>10} {'full day':>9} {'answer':<30} {'503 cost':>14}"
        f" {'upd/tx/refused tx per alloc':>28} {'after expiry ok':>16}"
    )
    print(header)
    print("-" * len(header))
    base = next((sum(r.held.values()) for n, r in results if n == 1), None)
    for n, result in results:
        fill = result.fill
        held = sum(result.held.values())
        ratio = f"{held / base:.2f}" if base else "-"
        alarms = [a.day for a in result.alarms.values()]
        failures = sum(fill.failures.values()) + fill.premature + result.repeats + result.outside
        answer = (
            "none"
            if fill.first is None or fill.first.exhausted is None
            else f"{fill.first.exhausted.http_status} {fill.first.exhausted.code}"
        )
        cost = "-"
        if len(result.probes) >= 3:
            cost = "/".join(str(p.answer.calls) for p in result.probes[:3])
        costs = per_charge(result)
        print(
            f"{n:>9} {held:>9} {ratio:>8} {fill.seconds:>8.1f}"
            f" {fill.written / max(fill.seconds, 1e-9):>8.1f} {failures:>5}"
            f" {(min(alarms) if alarms else float('nan')):>10.1f} {fill.first_day:>9.1f}"
            f" {answer:<30} {cost:>14}"
            f" {costs['counter updates']:>9.3f}/{costs['transactions']:.3f}"
            f"/{costs['refused transactions']:.4f}"
            f" {after_text(result.after):>16}"
        )
    print("503 cost: DynamoDB calls of the first 503 / the same container again / a new container")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--slots",
        type=int,
        default=SLOTS,
        help=f"slots per ring, a multiple of {MARKS} up to {SLOTS} (space = {SHARDS} x slots)",
    )
    parser.add_argument("--terminals", default="1,4", help="scenarios: terminal counts")
    parser.add_argument("--workers", type=int, default=8, help="threads, one container each")
    parser.add_argument("--window-days", type=int, default=400, help="suffix reservation window")
    parser.add_argument(
        "--per-day",
        type=float,
        default=None,
        help="charges per test-clock day, all terminals of a scenario together (default: 1.1 x"
        " the space of the largest scenario per window, so every scenario fills up)",
    )
    parser.add_argument("--alarm-percent", type=float, default=80.0, help="alarm threshold")
    parser.add_argument(
        "--after-days", type=float, default=0.0, help="days of charges once suffixes expire"
    )
    parser.add_argument(
        "--after-workers", type=int, default=0, help="workers once suffixes expire (0: all)"
    )
    parser.add_argument("--progress", type=float, default=60.0, help="seconds between lines")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--block", type=int, default=BLOCK, help="slots per counter write (the allocator's block)"
    )
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_SLOTS} slots, 1 and 2")
    return parser.parse_args(argv)


def settings_of(args: argparse.Namespace) -> tuple[Settings, list[int]]:
    """Sizes and scenarios from the command line (--smoke overrides)."""
    slots = SMOKE_SLOTS if args.smoke else args.slots
    scenarios = [1, 2] if args.smoke else [int(n) for n in args.terminals.split(",")]
    if slots % MARKS or not 0 < slots <= SLOTS:
        raise SystemExit(f"--slots must be a multiple of {MARKS} up to {SLOTS}")
    per_day = args.per_day or round(1.1 * max(scenarios) * SHARDS * slots / args.window_days, 3)
    return (
        Settings(
            slots=slots,
            window_days=args.window_days,
            per_day=per_day,
            workers=4 if args.smoke else args.workers,
            alarm=args.alarm_percent / 100,
            progress_seconds=0.0 if args.smoke else args.progress,
            seed=args.seed,
            block=args.block,
        ),
        scenarios,
    )


def main(argv: list[str] | None = None) -> int:
    """Run every scenario on its own DynamoDB Local and print."""
    args = parse_args(argv)
    settings, scenarios = settings_of(args)
    print(
        f"invoice space bench: {SHARDS} rings x {settings.slots} slots per ring ="
        f" {settings.space} suffixes per terminal"
        f"{'' if settings.slots == SLOTS else ' (REDUCED from the real 62,500 per ring)'},"
        f" window {settings.window_days} days, {settings.per_day:g} charges/day in all,"
        f" {settings.workers} workers, alarm at {settings.alarm:.0%}"
        + (
            f"; then {args.after_days:g} days of charges once suffixes expire"
            f" ({args.after_workers or settings.workers} workers)"
            if args.after_days
            else ""
        ),
        flush=True,
    )
    results: list[tuple[int, Result]] = []
    for terminals in scenarios:
        server = DynamoDBLocal().start()  # one per scenario: a fresh JVM and memory
        try:
            result = run_scenario(
                server.url, terminals, settings, args.after_days, args.after_workers
            )
        finally:
            server.stop()
        print_scenario(f"{terminals} terminal{'s' if terminals > 1 else ''}", result, settings)
        sys.stdout.flush()
        results.append((terminals, result))
    print_table(results, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
