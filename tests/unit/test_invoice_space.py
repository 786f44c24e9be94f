"""The invoice suffix space: rings per terminal, no cliff, a clear answer at exhaustion, terminals
chosen by purpose and weight (payments.charges.invoices and .terminals)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from payments.charges.invoices import (
    BLOCK,
    MARKS,
    SHARDS,
    InvoiceAllocator,
    RingSlot,
    SuffixHolder,
    reserved_share,
)
from payments.charges.links import PublicLinks
from payments.charges.model import CaptureMode
from payments.charges.requests import ChargeRequest
from payments.charges.service import ChargeService
from payments.charges.settlement import ChargeSettler
from payments.charges.terminals import Purpose, Terminal, charge_purpose, route
from payments.charges.transitions import ChargeTransitions
from payments.errors import DuplicateKeyError, InvoiceSpaceExhaustedError
from payments.shared.deadline import Deadline
from tests.fakes import (
    TEST_NOW,
    FakeGateway,
    FakeInvoiceSpace,
    FakeStore,
    RecordingInvoiceTelemetry,
    RecordingTelemetry,
)
from tests.unit.test_charge_service import AUTH

SLOTS = 200  # small rings: 16 x 200 = 3,200 suffixes a terminal; a block of RUN at most
RUN = 10  # a block size to test blocks with (the allocator's default, BLOCK, is 1: blocks off)
SPACE = SHARDS * SLOTS
WINDOW = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = TEST_NOW

    def __call__(self) -> datetime:
        return self.now


class Ledger:
    """The create transaction's two invoice guards, as DynamoDB keeps them: an id once ever, a
    terminal's suffix while its reservation lasts."""

    def __init__(self, space: FakeInvoiceSpace, clock: Clock) -> None:
        self.space, self.clock = space, clock
        self.ids: set[str] = set()
        self.attempts = 0

    def writer(self, terminal: str):  # type: ignore[no-untyped-def]
        def attempt(invoice_id: str) -> str:
            self.attempts += 1
            if invoice_id in self.ids:
                raise DuplicateKeyError("taken", "invoice")
            holder = self.space.holders.get((terminal, invoice_id[-6:]))
            if holder is not None and holder.expires_at > self.clock():
                raise DuplicateKeyError("taken", "invoice_suffix")
            self.space.holders[(terminal, invoice_id[-6:])] = SuffixHolder(
                invoice_id, self.clock() + WINDOW
            )
            self.ids.add(invoice_id)
            return invoice_id

        return attempt


def allocator(
    space: FakeInvoiceSpace,
    clock: Clock,
    telemetry: RecordingInvoiceTelemetry | None = None,
    block: int = 1,
    rand: Callable[[], float] = random.random,
) -> InvoiceAllocator:
    return InvoiceAllocator(
        space,
        telemetry or RecordingInvoiceTelemetry(),
        window=WINDOW,
        clock=clock,
        rand=rand,
        slots=SLOTS,
        block=block,
    )


# One slot per counter write (the default, as bootstrap's allocator takes them), and blocks: one
# that does not divide a ring's slots (a block would cross from one lap into the next), and RUN.
BLOCKS = pytest.mark.parametrize("block", [BLOCK, 3, RUN])


def test_a_ring_slot_names_a_suffix_of_its_shard_and_an_id_of_its_lap_and_lane() -> None:
    # Given the 3rd slot of ring 5 on lane 7, first lap / Then the suffix is 2*16+5
    slot = RingSlot(lane=7, shard=5, n=3)
    assert (slot.suffix, slot.invoice_id, slot.lap) == ("000037", "007000037", 0)
    # And one lap later the same suffix comes with the next prefix
    later = RingSlot(lane=7, shard=5, n=3 + slot.slots)
    assert (later.suffix, later.invoice_id) == ("000037", "107000037")
    assert later.previous_lap() == slot


@BLOCKS
def test_ids_are_unique_across_terminals_and_suffixes_unique_per_terminal(block: int) -> None:
    # Given two terminals on one table
    space, clock = FakeInvoiceSpace(), Clock()
    ledger, alloc = Ledger(space, clock), allocator(space, clock, block=block)
    # When each takes its whole space once
    ids = {t: [alloc.allocate(t, ledger.writer(t)) for _ in range(SPACE)] for t in ("t-a", "t-b")}
    # Then every id is 9 digits, no id repeats, and each terminal used every suffix exactly once
    everything = ids["t-a"] + ids["t-b"]
    assert all(len(i) == 9 and i.isdigit() for i in everything)
    assert len(set(everything)) == 2 * SPACE
    assert all(len({i[-6:] for i in ids[t]}) == SPACE for t in ids)
    # And the only refused writes were the ones that found a ring full (one per ring at most)
    assert ledger.attempts - 2 * SPACE <= 2 * SHARDS


@BLOCKS
def test_no_cliff_when_the_space_is_90_percent_used_within_the_window(block: int) -> None:
    # Given charges arriving so that 90% of the suffixes are reserved at any time
    space, clock = FakeInvoiceSpace(), Clock()
    ledger, alloc = Ledger(space, clock), allocator(space, clock, block=block)
    step = WINDOW / (SPACE * 0.9)
    # When five windows' worth of charges are allocated
    for _ in range(int(SPACE * 0.9 * 5)):
        alloc.allocate("t-a", ledger.writer("t-a"))
        clock.now += step
    # Then none failed and no write was refused: one write each
    assert ledger.attempts == int(SPACE * 0.9 * 5)
    assert "mark_full" not in space.calls
    # And blocks were taken on the rings' first lap only (a ring's first slot alone, then
    # blocks while a whole one fits), one counter step a slot after it
    takes, later = Counter(space.calls)["take"], ledger.attempts - SPACE
    assert later <= takes <= later + -(-SPACE // block) + SHARDS * (block + 1)
    if block > 1:
        assert takes < later + SPACE // 2


@BLOCKS
def test_a_full_space_serves_charges_as_fast_as_its_suffixes_free(block: int) -> None:
    # Given a terminal whose every suffix was used within one window
    space, clock = FakeInvoiceSpace(), Clock()
    ledger, alloc = Ledger(space, clock), allocator(space, clock, block=block)
    step = WINDOW / (SPACE * 0.99)
    for _ in range(SPACE):
        alloc.allocate("t-a", ledger.writer("t-a"))
        clock.now += step
    # When charges keep coming a little slower than the oldest suffixes free, for a window more
    written = []
    for _ in range(SPACE):
        written.append(alloc.allocate("t-a", ledger.writer("t-a")))
        clock.now += step
    # Then every one of them found a free id (none answered 503): from the second lap on, a
    # counter step takes one slot, so the counter never runs ahead of the suffixes that freed
    assert len(set(written)) == SPACE
    assert ledger.attempts - 2 * SPACE <= 2 * SHARDS


@BLOCKS
def test_true_exhaustion_is_a_503_with_retry_after_then_frees_in_order(block: int) -> None:
    # Given every suffix of the terminal reserved a moment ago
    space, clock, telemetry = FakeInvoiceSpace(), Clock(), RecordingInvoiceTelemetry()
    ledger, alloc = Ledger(space, clock), allocator(space, clock, telemetry, block)
    for _ in range(SPACE):
        alloc.allocate("t-a", ledger.writer("t-a"))
        clock.now += timedelta(seconds=1)
    # When one more charge asks / Then it is refused with the time until a suffix frees
    with pytest.raises(InvoiceSpaceExhaustedError) as refused:
        alloc.allocate("t-a", ledger.writer("t-a"))
    assert refused.value.http_status == 503
    assert refused.value.code == "invoice_space_exhausted"
    first_free = WINDOW - timedelta(seconds=SPACE)
    assert refused.value.retry_after is not None
    assert abs(refused.value.retry_after - first_free.total_seconds()) <= SPACE
    assert telemetry.exhausted == ["t-a"]
    # And the next refusal costs no store call at all (the rings are known full)
    calls = len(space.calls)
    with pytest.raises(InvoiceSpaceExhaustedError):
        alloc.allocate("t-a", ledger.writer("t-a"))
    assert len(space.calls) == calls
    # When the oldest reservations expire / Then allocation resumes with the freed suffixes
    clock.now = TEST_NOW + WINDOW + timedelta(seconds=SHARDS + 1)
    again = alloc.allocate("t-a", ledger.writer("t-a"))
    assert again.startswith("100")  # the second lap of lane 0


def test_containers_taking_blocks_of_one_ring_never_share_a_slot() -> None:
    # Given two containers of one terminal, each taking blocks of RUN slots
    space, clock = FakeInvoiceSpace(), Clock()
    ledger = Ledger(space, clock)
    first, second = allocator(space, clock, block=RUN), allocator(space, clock, block=RUN)
    # When they allocate in turn, and the first stops (its unused slots are never handed out)
    ids = []
    for _ in range(RUN + 2):
        ids += [first.allocate("t-a", ledger.writer("t-a"))]
        ids += [second.allocate("t-a", ledger.writer("t-a"))]
    ids += [allocator(space, clock, block=RUN).allocate("t-a", ledger.writer("t-a"))]
    # Then no id repeats and no write was refused
    assert len(set(ids)) == len(ids) == 2 * (RUN + 2) + 1
    assert ledger.attempts == len(ids)
    # And each container took a ring's first slot alone and the rest of its run of RUN charges
    # in one block there, then the same on the next ring; the newcomer one slot
    assert Counter(space.calls)["take"] == 4 + 4 + 1
    assert sum(ring["n"] for ring in space.rings.values()) == 2 * 2 * RUN + 1
    # And a container's consecutive charges used consecutive slots of one ring
    shards = [int(i[-6:]) % SHARDS for i in ids[0 : 2 * RUN : 2]]
    assert len(set(shards)) == 1


def test_a_block_is_never_more_than_a_mark_segment() -> None:
    # Given rings of 40 slots (a mark every 2), all full but ring 0, and an allocator asked for
    # blocks of RUN
    space, clock = FakeInvoiceSpace(), Clock()
    ledger = Ledger(space, clock)
    for shard in range(1, SHARDS):
        space.rings[("t-a", shard)] = {"n": 0, "m": {}, "full": clock() + WINDOW}
    alloc = InvoiceAllocator(
        space,
        RecordingInvoiceTelemetry(),
        window=WINDOW,
        clock=clock,
        rand=lambda: 0.0,
        slots=40,
        block=RUN,
    )
    # When it makes 6 charges: a run of 2 learning where the ring stands (one slot at a time),
    # then runs of 2 in one counter write each
    for _ in range(6):
        alloc.allocate("t-a", ledger.writer("t-a"))
    # Then its blocks were 2 slots, not RUN (and each full ring answered one take)
    assert Counter(space.calls)["take"] == (SHARDS - 1) + 2 + 1 + 1
    assert space.rings[("t-a", 0)]["n"] == 6


def test_a_segments_mark_is_written_when_its_block_is_taken_not_when_its_slot_is_used() -> None:
    # Given a container taking blocks of up to 4 from ring 0 (a mark every 10 slots: slots 1
    # and 11), the terminal's other rings marked full
    space, clock = FakeInvoiceSpace(), Clock()
    ledger = Ledger(space, clock)
    for shard in range(1, SHARDS):
        space.rings[("t-a", shard)] = {"n": 0, "m": {}, "full": clock() + WINDOW}
    alloc = allocator(space, clock, block=4, rand=lambda: 0.0)
    # When it makes 10 charges (slot 1, then blocks 2-4, 5-8, 9-12) and stops before slot 11
    for _ in range(10):
        alloc.allocate("t-a", ledger.writer("t-a"))
    # Then the ring still knows when it reached slot 11: its mark went with the counter write
    ring = space.rings[("t-a", 0)]
    assert ring["n"] == 12
    assert sorted(ring["m"]) == [0, 1]
    assert space.calls.count("mark") == 2


def test_a_ring_found_full_gives_the_rest_of_the_block_back() -> None:
    # Given ring 0, where a container took its first slot and holds the ring's place
    space, clock = FakeInvoiceSpace(), Clock()
    ledger = Ledger(space, clock)
    alloc = allocator(space, clock, block=RUN, rand=lambda: 0.0)
    alloc.allocate("t-a", ledger.writer("t-a"))
    # And the rest of the ring's first lap taken by others a moment ago
    ring = space.rings[("t-a", 0)]
    ring["n"] = SLOTS - 2
    # When the container makes three charges: its block runs from the lap's last two slots into
    # the next lap, whose first slot's suffix slot 1 still holds
    taken = [alloc.allocate("t-a", ledger.writer("t-a")) for _ in range(3)]
    # Then the two free slots were used, ring 0 is marked full until slot 1's reservation ends,
    # and the block's rest went back (the counter stands at the lap's end)
    assert [int(i[-6:]) // SHARDS + 1 for i in taken[:2]] == [SLOTS - 1, SLOTS]
    assert space.calls.count("mark_full") == 1
    assert ring["full"] == clock() + WINDOW + timedelta(seconds=1)
    assert ring["n"] == SLOTS
    # And the third charge took the next ring's first slot
    assert int(taken[2][-6:]) % SHARDS == 1
    assert space.rings[("t-a", 1)]["n"] == 1


def test_suffixes_held_by_merchant_ids_are_skipped() -> None:
    # Given merchant-supplied ids holding the first slots of every ring
    space, clock = FakeInvoiceSpace(), Clock()
    ledger, alloc = Ledger(space, clock), allocator(space, clock)
    for shard in range(SHARDS):
        suffix = f"{shard:06d}"
        space.holders[("t-a", suffix)] = SuffixHolder("55" + suffix, clock() + WINDOW)
    # When a charge is allocated / Then it gets the ring's next slot, after one refused write
    invoice = alloc.allocate("t-a", ledger.writer("t-a"))
    assert invoice[-6:] not in {f"{s:06d}" for s in range(SHARDS)}
    assert ledger.attempts == 2


def test_the_reserved_share_follows_the_marks() -> None:
    # Given a ring half used within the window, marks written as it went
    space, clock = FakeInvoiceSpace(), Clock()
    ledger, alloc = Ledger(space, clock), allocator(space, clock)
    for _ in range(SPACE // 2):
        alloc.allocate("t-a", ledger.writer("t-a"))
    ring = space.rings[("t-a", 0)]
    # Then the share is about one half (rounded up to a mark) / And falls once the window passed
    share = reserved_share(ring["n"], ring["m"], clock(), WINDOW, SLOTS)
    assert 0.4 <= share <= 0.5 + 2 / MARKS
    later = reserved_share(ring["n"], ring["m"], clock() + WINDOW * 2, WINDOW, SLOTS)
    assert later <= 2 / MARKS


def test_routing_spreads_by_weight_within_the_purpose() -> None:
    # Given a 3-D Secure terminal for customers and two recurring ones, weighted 3:1
    cit = Terminal("cit-1", frozenset({Purpose.CIT, Purpose.SETUP}))
    mit_a = Terminal("mit-a", frozenset({Purpose.MIT}), weight=3)
    mit_b = Terminal("mit-b", frozenset({Purpose.MIT}), weight=1)
    terminals = (cit, mit_a, mit_b)
    # Then recurrent charges go to mit terminals only, about 3:1, the other one next in line
    draws = [route(terminals, charge_purpose(True), rand=lambda r=r: r / 1000) for r in range(1000)]
    assert all({t.id for t in order} == {"mit-a", "mit-b"} for order in draws)
    firsts = Counter(order[0].id for order in draws)
    assert (firsts["mit-a"], firsts["mit-b"]) == (750, 250)
    # And customer-present charges go to the cit terminal alone
    assert route(terminals, charge_purpose(False)) == [cit]


def test_a_full_terminal_is_passed_over_for_another_of_the_same_purpose() -> None:
    # Given two mit terminals, the first one's space all reserved
    space, clock = FakeInvoiceSpace(), Clock()
    ledger, alloc = Ledger(space, clock), allocator(space, clock)
    for _ in range(SPACE):
        alloc.allocate("mit-full", ledger.writer("mit-full"))
    gateway = FakeGateway(auth_outcome=AUTH)
    gateway.terminal_list = (
        Terminal("mit-full", frozenset({Purpose.MIT}), weight=1000),
        Terminal("mit-room", frozenset({Purpose.MIT}), weight=1),
    )
    service = _service(gateway, alloc, clock, space)
    # When a recurring charge is created
    request = ChargeRequest(
        Decimal(100), "KZT", "card", "acct", "d", capture=CaptureMode.AUTO, recurrent=True
    )
    charge = service.create_charge(request, "key", Deadline.after(20)).charge
    # Then it was made on the terminal with room, and its ePay calls named that terminal
    assert charge.terminal_id == "mit-room"
    assert gateway.calls[0][1].terminal_id == "mit-room"
    assert gateway.calls[1][1].terminal_id == "mit-room"


def test_every_terminal_full_is_a_503_before_any_epay_call() -> None:
    # Given the only terminal's space all reserved
    space, clock = FakeInvoiceSpace(), Clock()
    ledger, alloc = Ledger(space, clock), allocator(space, clock)
    for _ in range(SPACE):
        alloc.allocate("terminal-1", ledger.writer("terminal-1"))
    gateway = FakeGateway(auth_outcome=AUTH)
    service = _service(gateway, alloc, clock, space)
    # When a charge is asked for / Then 503 invoice_space_exhausted, and ePay heard nothing
    request = ChargeRequest(Decimal(100), "KZT", "card", "acct", "d", capture=CaptureMode.AUTO)
    with pytest.raises(InvoiceSpaceExhaustedError):
        service.create_charge(request, "key", Deadline.after(20))
    assert gateway.calls == []


def _service(
    gateway: FakeGateway, alloc: InvoiceAllocator, clock: Clock, space: FakeInvoiceSpace
) -> ChargeService:
    store, telemetry = FakeStore(space, WINDOW), RecordingTelemetry()
    transitions = ChargeTransitions(store=store, telemetry=telemetry, clock=clock)
    settler = ChargeSettler(
        store=store, gateway=gateway, transitions=transitions, telemetry=telemetry
    )
    return ChargeService(
        store=store,
        gateway=gateway,
        settler=settler,
        transitions=transitions,
        telemetry=telemetry,
        links=PublicLinks("https://pay.example"),
        allocator=alloc,
        clock=clock,
    )


def test_when_every_terminal_is_full_retry_after_is_the_soonest_and_the_share_reads_full() -> None:
    # Given two mit terminals filled an hour apart (the second frees an hour later)
    space, clock = FakeInvoiceSpace(), Clock()
    telemetry = RecordingInvoiceTelemetry()
    ledger, alloc = Ledger(space, clock), allocator(space, clock, telemetry)
    for terminal in ("mit-early", "mit-late"):
        for _ in range(SPACE):
            alloc.allocate(terminal, ledger.writer(terminal))
        clock.now += timedelta(hours=1)
    gateway = FakeGateway(auth_outcome=AUTH)
    gateway.terminal_list = (
        Terminal("mit-late", frozenset({Purpose.MIT}), weight=1000),
        Terminal("mit-early", frozenset({Purpose.MIT}), weight=1),
    )
    service = _service(gateway, alloc, clock, space)
    request = ChargeRequest(
        Decimal(100), "KZT", "card", "acct", "d", capture=CaptureMode.AUTO, recurrent=True
    )
    # When a charge is asked for / Then Retry-After is the earlier terminal's, not the first tried
    with pytest.raises(InvoiceSpaceExhaustedError) as refused:
        service.create_charge(request, "key", Deadline.after(20))
    early_frees = (TEST_NOW + WINDOW - clock.now).total_seconds()  # the late one: an hour on
    assert refused.value.retry_after is not None
    assert early_frees <= refused.value.retry_after <= early_frees + 2
    # And the alarm's metric reads 100% for each full terminal (not silence)
    assert ("mit-early", 1.0) in telemetry.shares
    assert ("mit-late", 1.0) in telemetry.shares
