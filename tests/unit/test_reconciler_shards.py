"""The reconciler's shards (issue 16): one read of a charge per check, shards in rotation (no
shard waits behind another's backlog), one shard's run drains that shard only, several checks at
once, two runs on one shard settle each charge once, and the tick's fan-out (one unit per due
shard, deduplicated per tick)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from payments.cards.reconciler import SetupReconciler, SetupReport
from payments.charges.links import PublicLinks
from payments.charges.model import CHECK_LADDER, CaptureMode, Charge, ChargeStatus
from payments.charges.payment_gateway import StatusResult
from payments.charges.reconcile_fanout import (
    ReconcileFanOut,
    ReconcileUnit,
    UnitKind,
    parse_unit,
    threads_setting,
)
from payments.charges.reconciler import Reconciler
from payments.charges.requests import ChargeRequest
from payments.charges.use_cases import ChargeUseCases
from payments.errors import ConfigurationError, GatewayUnknownOutcomeError, ValidationError
from payments.refunds.reconciler import RefundCheck, RefundReconciler
from payments.shared.deadline import Deadline
from tests.fakes import FakeGateway, FakeStore, RecordingTelemetry, fake_allocator
from tests.unit.test_settle_and_reconcile import Clock, status

S = ChargeStatus


class ShardedStore(FakeStore):
    """FakeStore whose due index has shards (`shard_of`, default 0) and that counts its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.shard_of: dict[str, int] = {}
        self.reads: Counter[str] = Counter()
        self.pages: list[int] = []  # the shard of every due-index page asked for

    def get(self, charge_id: str) -> Charge | None:
        self.reads[charge_id] += 1
        return super().get(charge_id)

    def due_charge_ids(self, shard: int, now: datetime, limit: int) -> list[str]:
        self.pages.append(shard)
        due = super().due_charge_ids(shard, now, len(self.charges))
        return [i for i in due if self.shard_of.get(i, 0) == shard][:limit]


@dataclass
class CapturedAtEpay(FakeGateway):
    """ePay shows every charge as CHARGE (money taken); `on_status` sees each status call."""

    on_status: list[object] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    asked: Counter[str] = field(default_factory=Counter)

    def status(self, invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        with self.lock:
            self.asked[invoice_id] += 1
        if self.delay:
            time.sleep(self.delay)  # keeps several checks in flight at once
        return status("CHARGE")


class Budget:
    """A deadline a test ends by hand (`expire`)."""

    def __init__(self) -> None:
        self.left = 100.0

    def remaining(self) -> float:
        return self.left

    def expire(self) -> None:
        self.left = 0.0


@dataclass
class Rig:
    store: ShardedStore
    gateway: CapturedAtEpay
    clock: Clock
    charges: ChargeUseCases

    def reconciler(self, *, threads: int = 1, batch_size: int = 50) -> Reconciler:
        return Reconciler(
            store=self.store,
            settler=self.charges.settler,
            transitions=self.charges.transitions,
            clock=self.clock,
            batch_size=batch_size,
            threads=threads,
        )

    def unknown_charges(self, count: int, shard: int) -> list[str]:
        """`count` UNKNOWN charges (their auth's answer lost) in `shard`, not due yet."""
        ids = []
        for _ in range(count):
            key = f"k-{len(self.store.charges)}"
            charge = self.charges.service.create_charge(REQUEST, key, Deadline.after(20)).charge
            assert charge.status is S.UNKNOWN
            self.store.shard_of[charge.id] = shard
            ids.append(charge.id)
        return ids

    def statuses(self, ids: list[str]) -> Counter[ChargeStatus]:
        return Counter(self.store.charges[i].status for i in ids)


REQUEST = ChargeRequest(
    amount=Decimal("100.00"),
    currency="KZT",
    card_id="c0000000-0000-4000-8000-000000000001",
    account_id="a",
    description="d",
    capture=CaptureMode.AUTO,
)


@pytest.fixture
def rig() -> Rig:
    clock = Clock()
    store = ShardedStore()
    gateway = CapturedAtEpay(auth_outcome=GatewayUnknownOutcomeError("timeout", operation="auth"))
    charges = ChargeUseCases.build(
        store=store,
        gateway=gateway,
        telemetry=RecordingTelemetry(),
        links=PublicLinks("https://pay.example"),
        allocator=fake_allocator(),
        clock=clock,
    )
    return Rig(store, gateway, clock, charges)


# ------------------------------------------------------------------------------ one read a check


def test_a_reconciler_check_reads_the_charge_once(rig: Rig) -> None:
    # Given UNKNOWN charges in two shards whose first check is due
    ids = rig.unknown_charges(3, shard=1) + rig.unknown_charges(2, shard=6)
    rig.clock.advance(CHECK_LADDER[0])
    rig.store.reads.clear()

    # When the reconciler runs
    report = rig.reconciler().run(Deadline.after(30))

    # Then each charge was settled from ePay's status with one read of it, no more
    assert report.settled == 5
    assert rig.statuses(ids) == {S.CAPTURED: 5}
    assert rig.store.reads == dict.fromkeys(ids, 1)


def test_an_on_demand_check_reads_the_charge_once(rig: Rig) -> None:
    # Given one UNKNOWN charge
    (charge_id,) = rig.unknown_charges(1, shard=3)
    rig.store.reads.clear()

    # When it is checked on demand (POST /charges/{id}/reconcile)
    result = rig.reconciler().check(charge_id, Deadline.after(30), forced=True)

    # Then it is settled after one read
    assert result.charge.status is S.CAPTURED
    assert rig.store.reads == {charge_id: 1}


# ------------------------------------------------------------------------------ no starvation


@pytest.mark.parametrize("threads", [1, 4])
def test_a_backlog_in_shard_0_does_not_hold_up_shard_7(rig: Rig, threads: int) -> None:
    # Given 60 due charges in shard 0 and one in shard 7
    backlog = rig.unknown_charges(60, shard=0)
    (late,) = rig.unknown_charges(1, shard=7)
    rig.clock.advance(CHECK_LADDER[0])
    # And a run whose time runs out after 20 status checks
    budget = Budget()
    checks = {"n": 0}
    answer = rig.gateway.status

    def counted(invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        checks["n"] += 1
        if checks["n"] >= 20:
            budget.expire()
        return answer(invoice_id, terminal_id, deadline)

    rig.gateway.status = counted  # type: ignore[method-assign]

    # When the reconciler runs (pages of 10)
    report = rig.reconciler(threads=threads, batch_size=10).run(budget)  # type: ignore[arg-type]

    # Then shard 7's charge was checked in the same run, though shard 0's backlog was not done
    assert rig.store.charges[late].status is S.CAPTURED
    assert rig.statuses(backlog)[S.UNKNOWN] >= 30
    assert report.checked < 61
    # And the shards were listed in rotation: shard 7's first page before shard 0's second
    pages = rig.store.pages
    assert pages.index(7) < [i for i, shard in enumerate(pages) if shard == 0][1]


def test_one_shards_run_drains_that_shard_only(rig: Rig) -> None:
    # Given 25 due charges in shard 2 (more than a page) and 3 in shard 5
    mine = rig.unknown_charges(25, shard=2)
    others = rig.unknown_charges(3, shard=5)
    rig.clock.advance(CHECK_LADDER[0])

    # When one unit's run takes shard 2, with pages of 4 and 3 checks at once
    report = rig.reconciler(threads=3, batch_size=4).run_shard(2, Deadline.after(30))

    # Then every charge of shard 2 is settled, page after page, and shard 5 is untouched
    assert rig.statuses(mine) == {S.CAPTURED: 25}
    assert rig.statuses(others) == {S.UNKNOWN: 3}
    assert (report.checked, report.settled, report.due) == (25, 25, 25)
    assert set(rig.store.pages) == {2}
    assert rig.store.reads == dict.fromkeys(mine, 1)


def test_checks_run_at_once_in_threads(rig: Rig) -> None:
    # Given 24 due charges in one shard and ePay taking 20 ms a status answer
    ids = rig.unknown_charges(24, shard=4)
    rig.clock.advance(CHECK_LADDER[0])
    rig.gateway.delay = 0.02

    # When one shard's run checks 8 at once
    started = time.perf_counter()
    report = rig.reconciler(threads=8, batch_size=6).run_shard(4, Deadline.after(30))
    elapsed = time.perf_counter() - started

    # Then all are settled in far less than 24 answers one after another
    assert report.settled == 24
    assert rig.statuses(ids) == {S.CAPTURED: 24}
    assert elapsed < 24 * 0.02 * 0.6


# ------------------------------------------------------------------------------ idempotency


def test_two_runs_on_one_shard_settle_each_charge_once(rig: Rig) -> None:
    # Given 30 due charges in shard 3 and ePay answering slowly enough for runs to overlap
    ids = rig.unknown_charges(30, shard=3)
    rig.clock.advance(CHECK_LADDER[0])
    rig.gateway.delay = 0.005

    # When two runs (as two overlapping invocations would) take the shard at once
    runs = [rig.reconciler(threads=4, batch_size=5) for _ in range(2)]
    reports = []
    threads = [
        threading.Thread(target=lambda r=run: reports.append(r.run_shard(3, Deadline.after(30))))
        for run in runs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then each charge was settled by exactly one write (conditional on the version read)
    assert rig.statuses(ids) == {S.CAPTURED: 30}
    for charge_id in ids:
        settled = [e for e in rig.store.history[charge_id] if e.to_status is S.CAPTURED]
        assert len(settled) == 1, charge_id
    # And the runs did overlap: both asked ePay about some of the same charges
    assert sum(r.checked for r in reports) > 30


# ------------------------------------------------------------------------------ the fan-out


@dataclass
class FakeShards:
    shard_count: int
    due: set[int]
    asked: list[tuple[int, datetime]] = field(default_factory=list)

    def has_due(self, shard: int, now: datetime) -> bool:
        self.asked.append((shard, now))
        return shard in self.due


@dataclass
class FakeQueue:
    sent: list[ReconcileUnit] = field(default_factory=list)

    def send(self, units: list[ReconcileUnit]) -> None:
        self.sent.extend(units)


NOW = datetime(2026, 12, 6, 10, 0, 7, tzinfo=UTC)


def test_the_tick_sends_one_unit_per_due_shard() -> None:
    # Given charge shards 0 and 7, refund shard 2 and no card setup shard with something due
    sources = {
        UnitKind.CHARGES: FakeShards(8, {0, 7}),
        UnitKind.REFUNDS: FakeShards(4, {2}),
        UnitKind.SETUPS: FakeShards(2, set()),
    }
    queue = FakeQueue()
    fanout = ReconcileFanOut(sources=sources, queue=queue, clock=lambda: NOW)

    # When the schedule ticks
    report = fanout.tick("2026-12-06T10:00:00Z")

    # Then every shard was probed at the tick's time, and one unit per due shard was sent
    assert report.probed == 14
    assert all(now == NOW for s in sources.values() for _, now in s.asked)
    assert [(u.kind, u.shard) for u in queue.sent] == [
        (UnitKind.CHARGES, 0),
        (UnitKind.CHARGES, 7),
        (UnitKind.REFUNDS, 2),
    ]
    # And each unit is its shard's ordering group, deduplicated by the schedule's time
    assert [u.group for u in queue.sent] == ["charges-0", "charges-7", "refunds-2"]
    assert queue.sent[0].dedup_id == "charges-0-2026-12-06T10:00:00Z"
    # And a unit survives its message body
    assert parse_unit(queue.sent[1].body()) == ReconcileUnit(UnitKind.CHARGES, 7, NOW)


def test_a_tick_with_nothing_due_sends_nothing() -> None:
    queue = FakeQueue()
    fanout = ReconcileFanOut(
        sources={UnitKind.CHARGES: FakeShards(8, set())}, queue=queue, clock=lambda: NOW
    )
    assert fanout.tick().units == ()
    assert queue.sent == []


def test_a_tick_delivered_twice_names_the_same_units() -> None:
    # Given the same scheduled tick handled twice, a few seconds apart
    sources = {UnitKind.CHARGES: FakeShards(8, {3})}
    first, second = FakeQueue(), FakeQueue()
    ReconcileFanOut(sources=sources, queue=first, clock=lambda: NOW).tick("2026-12-06T10:00:00Z")
    later = datetime(2026, 12, 6, 10, 0, 9, tzinfo=UTC)
    ReconcileFanOut(sources=sources, queue=second, clock=lambda: later).tick("2026-12-06T10:00:00Z")
    # Then its units carry the same deduplication id (SQS FIFO sends the second not at all)
    assert [u.dedup_id for u in first.sent] == [u.dedup_id for u in second.sent]


@pytest.mark.parametrize(
    "body",
    [
        "",
        "{}",
        '{"kind": "coupons", "shard": 1, "tick": "2026-12-06T10:00:00Z"}',
        '{"kind": "charges", "shard": -1, "tick": "2026-12-06T10:00:00Z"}',
        '{"kind": "charges", "shard": 1, "tick": "yesterday"}',
    ],
)
def test_a_malformed_unit_is_refused(body: str) -> None:
    with pytest.raises(ValidationError):
        parse_unit(body)


def test_threads_come_from_the_environment() -> None:
    assert threads_setting({}) == 8
    assert threads_setting({"RECONCILER_THREADS": "3"}) == 3
    for bad in ("0", "17", "x", "-1"):
        with pytest.raises(ConfigurationError):
            threads_setting({"RECONCILER_THREADS": bad})


# ------------------------------------------------------------------------------ refunds, setups


class PagedIndex:
    """A due index of ids by shard; a checked id stays listed for `lag` more pages (the index
    lags the table)."""

    def __init__(self, by_shard: dict[int, list[str]], lag: int = 0) -> None:
        self.by_shard, self.lag = by_shard, lag
        self.checked: Counter[str] = Counter()
        self.listed_after: dict[str, int] = {}
        self.pages: list[tuple[int, int]] = []

    def list(self, shard: int, limit: int) -> list[str]:
        self.pages.append((shard, limit))
        for charge_id, left in list(self.listed_after.items()):
            self.listed_after[charge_id] = left - 1
        due = [
            i
            for i in self.by_shard.get(shard, [])
            if not self.checked[i] or self.listed_after.get(i, 0) >= 0
        ]
        return due[:limit]

    def check(self, item_id: str) -> None:
        self.checked[item_id] += 1
        self.listed_after[item_id] = self.lag


class PagedRefunds(RefundReconciler):
    def __init__(self, index: PagedIndex) -> None:
        super().__init__(store=self, charges=None, service=None, status=None)  # type: ignore[arg-type]
        self.index = index

    def due(self, shard: int, now: datetime, limit: int) -> list[tuple[str, str]]:
        return [("ch_1", i) for i in self.index.list(shard, limit)]

    def check(self, refund_id: str, deadline: Deadline) -> RefundCheck:
        self.index.check(refund_id)
        return RefundCheck.SUCCEEDED


class PagedSetups(SetupReconciler):
    def __init__(self, index: PagedIndex) -> None:
        super().__init__(store=self, setups=None)  # type: ignore[arg-type]
        self.index = index

    def due_setup_ids(self, shard: int, now: datetime, limit: int) -> list[str]:
        return self.index.list(shard, limit)

    def check(self, setup_id: str, deadline: Deadline, report: SetupReport) -> None:
        self.index.check(setup_id)
        report.checked += 1


@pytest.mark.parametrize("lag", [0, 1])
def test_one_refund_shards_run_drains_that_shard_page_after_page(lag: int) -> None:
    # Given 60 due refunds in shard 2 (pages of 25) and 5 in shard 1, the index lagging or not
    index = PagedIndex(
        {2: [f"rf_{n}" for n in range(60)], 1: [f"rf_x{n}" for n in range(5)]}, lag=lag
    )
    # When shard 2's unit runs
    report = PagedRefunds(index).run_shard(2, Deadline.after(30))
    # Then every refund of shard 2 was checked once, and nothing of shard 1
    assert report.checked[RefundCheck.SUCCEEDED] == 60
    assert set(index.checked) == {f"rf_{n}" for n in range(60)}
    assert set(index.checked.values()) == {1}
    assert {shard for shard, _ in index.pages} == {2}


@pytest.mark.parametrize("lag", [0, 1])
def test_one_setup_shards_run_drains_that_shard_page_after_page(lag: int) -> None:
    index = PagedIndex({1: [f"cs_{n}" for n in range(120)], 0: ["cs_other"]}, lag=lag)
    report = PagedSetups(index).run_shard(1, Deadline.after(30))
    assert report.checked == 120
    assert set(index.checked.values()) == {1}
    assert "cs_other" not in index.checked
