"""The reconciler: finds charges due for a check and settles them from ePay's status API.

Nothing is ever re-sent: an unclear charge is only asked about. Each unsuccessful check moves the
next one up a backoff ladder; after the last rung a person must look (NEEDS_REVIEW). A run takes
the shards in rotation, a page of each in turn, so a backlog in one never holds another up; a
fan-out unit (payments.charges.reconcile_fanout) drains one shard. Up to `threads` checks run at
once, each reading its charge once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from payments.charges.model import (
    CHECK_LADDER,
    DUE_SHARDS,
    PENDING_FINAL_AGE,
    Charge,
    ChargeStatus,
    Source,
    capture_in_flight,
)
from payments.charges.ports import ChargeStore
from payments.charges.settlement import PENDING_AT_GATEWAY, ChargeSettler, SettleOutcome
from payments.charges.terminals import TerminalCodes
from payments.charges.transitions import Change, ChargeTransitions
from payments.charges.voids import ChargeVoids
from payments.errors import ConflictError, GatewayError, NotFoundError, StaleStateError
from payments.shared.clock import utc_now
from payments.shared.deadline import Deadline

S = ChargeStatus
# ePay answering "no such invoice" is final only once an invoice could no longer appear there.
NOT_FOUND_FINAL_AGE = timedelta(minutes=15)
BATCH_SIZE = 50
MIN_SECONDS_PER_CHECK = 3.0


@dataclass
class ReconcileReport:
    """What one run did, and the backlog it found: `due` charges the index listed as due (each
    once, checked or not before the deadline; less those that were not due when read) and how
    long the one due longest had waited for its check (`oldest_due_seconds`, from the charges the
    run read: the index lists them oldest first, shard by shard)."""

    checked: int = 0
    settled: int = 0
    rescheduled: int = 0
    needs_review: int = 0
    skipped: int = 0
    due: int = 0
    oldest_due_seconds: int = 0


class Reconciler:
    """Checks due charges, each through ChargeSettler.settle_charge, so every path shares one
    machine; `threads` checks at once (1: in the caller's thread)."""

    def __init__(
        self,
        *,
        store: ChargeStore,
        settler: ChargeSettler,
        transitions: ChargeTransitions,
        clock: Callable[[], datetime] = utc_now,
        shards: int = DUE_SHARDS,
        batch_size: int = BATCH_SIZE,
        terminals: TerminalCodes | None = None,
        voids: ChargeVoids | None = None,
        threads: int = 1,
    ) -> None:
        self._store = store
        self._terminals = terminals  # learns the terminal's code from the status answers
        self._voids = voids  # finishes voids whose answer was lost
        self._settler = settler
        self._tx = transitions
        self._clock = clock
        self._shards = shards
        self._batch = batch_size
        self._threads = max(1, threads)

    @property
    def shard_count(self) -> int:
        """How many shards the due index has for charges (DUE#0..n-1)."""
        return self._shards

    def has_due(self, shard: int, now: datetime) -> bool:
        """Whether the index lists a charge of this shard as due (it may lag: a hint)."""
        return bool(self._store.due_charge_ids(shard, now, 1))

    def run(self, deadline: Deadline) -> ReconcileReport:
        """Check every charge due now, every shard in rotation, until done or the deadline nears."""
        return self._sweep(range(self._shards), deadline)

    def run_shard(self, shard: int, deadline: Deadline) -> ReconcileReport:
        """Check every charge due now in one shard (a fan-out unit), until done or the deadline
        nears."""
        return self._sweep([shard], deadline)

    def _sweep(self, shards: Sequence[int], deadline: Deadline) -> ReconcileReport:
        run = _Run(self._clock())
        rotation = deque(_Shard(number) for number in shards)
        waiting: deque[tuple[_Shard, str]] = deque()
        running: dict[Future[_Checked], _Shard] = {}
        with _executor(self._threads) as pool:
            while deadline.remaining() > MIN_SECONDS_PER_CHECK:
                if len(waiting) < self._threads:
                    self._refill(rotation, waiting, run)
                while (
                    waiting
                    and len(running) < self._threads
                    and deadline.remaining() > MIN_SECONDS_PER_CHECK
                ):
                    shard, charge_id = waiting.popleft()
                    running[pool.submit(self._check_listed, charge_id, run.now, deadline)] = shard
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    self._tally(run, running.pop(future), future.result())
            for future, shard in running.items():  # in flight when the deadline came
                self._tally(run, shard, future.result())
        return run.report

    def _refill(
        self, rotation: deque[_Shard], waiting: deque[tuple[_Shard, str]], run: _Run
    ) -> None:
        """Queue the next page of the shards in turn, until there is work for every thread."""
        for _ in range(len(rotation)):
            if len(waiting) >= self._threads:
                return
            shard = rotation.popleft()
            # Charges queued, in flight or just checked may still be listed (they are the oldest,
            # and the index lags the table): ask for that many more (the lag: a page at most).
            limit = self._batch + shard.pending + min(shard.checked_since_page, self._batch)
            listed = self._store.due_charge_ids(shard.number, run.now, limit)
            page = [i for i in listed if i not in run.seen]
            shard.checked_since_page = 0
            run.seen.update(page)
            run.listed.update(page)
            run.report.due = len(run.listed) - len(run.not_due)
            shard.pending += len(page)
            waiting.extend((shard, charge_id) for charge_id in page)
            if page and len(listed) == limit:
                rotation.append(shard)  # more may be due: its next page comes in turn

    def _check_listed(self, charge_id: str, now: datetime, deadline: Deadline) -> _Checked:
        """Read a listed charge once and check it (in a worker thread when threads > 1)."""
        charge = self._read(charge_id)
        return _Checked(
            charge_id, _waited(charge, now), self._check(charge, deadline, forced=False)
        )

    def _tally(self, run: _Run, shard: _Shard, checked: _Checked) -> None:
        shard.pending -= 1
        shard.checked_since_page += 1
        if checked.waited is None:
            run.not_due.add(checked.charge_id)  # the index lagged: not part of the backlog
            run.report.due = len(run.listed) - len(run.not_due)
        else:
            run.report.oldest_due_seconds = max(run.report.oldest_due_seconds, checked.waited)
        self._count(run.report, checked.result)

    def check(self, charge_id: str, deadline: Deadline, *, forced: bool) -> CheckResult:
        """Check one charge now if it is due (or if `forced`, as on demand)."""
        return self._check(self._read(charge_id), deadline, forced=forced)

    def _read(self, charge_id: str) -> Charge:
        charge = self._store.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        return charge

    def _check(self, charge: Charge, deadline: Deadline, *, forced: bool) -> CheckResult:
        now = self._clock()
        due = charge.next_check_at is not None and charge.next_check_at <= now
        if not (due or forced) or charge.status is S.NEEDS_REVIEW:
            return CheckResult(charge, CheckOutcome.SKIPPED)
        if charge.void_pending and self._voids is not None:
            return self._finish_void(charge, deadline)
        if capture_in_flight(charge, now):
            # Another path holds the capture claim and records its outcome: any write now would
            # make that write lose. The claim lapses within a minute; a later run looks then.
            return CheckResult(charge, CheckOutcome.SKIPPED)
        try:
            settlement = self._settler.settle_charge(charge, Source.RECONCILER, deadline)
        except GatewayError as exc:
            return self._later(charge, f"status API: {type(exc).__name__}")
        if self._terminals is not None:
            self._terminals.learn(settlement.transaction, charge.terminal_id)
        result = settlement.charge
        if result.status is not charge.status:
            return CheckResult(result, CheckOutcome.SETTLED)
        if (
            settlement.outcome is SettleOutcome.NOT_FOUND
            and now - charge.created_at >= NOT_FOUND_FINAL_AGE
            and charge.status in {S.PROCESSING, S.UNKNOWN, S.REQUIRES_3DS}
        ):
            return self._conclude(result, S.FAILED, "status API: no such invoice")
        if result.status is S.REQUIRES_3DS and _three_ds_expired(result, now):
            return self._conclude(result, S.EXPIRED, "3-D Secure not completed in time")
        if (
            settlement.gateway_status in PENDING_AT_GATEWAY
            and result.status in {S.PROCESSING, S.UNKNOWN}
            and now - charge.created_at >= PENDING_FINAL_AGE
        ):
            # ePay is still waiting for a step (3DS) nobody can finish: we lost the secure3D data
            # with the answer, and every token it could use has expired. Nothing was taken.
            return self._conclude(result, S.EXPIRED, f"still {settlement.gateway_status} at ePay")
        if result.next_check_at is None:
            return CheckResult(result, CheckOutcome.UNCHANGED)
        return self._later(result, f"status API: {settlement.outcome.value}")

    def _finish_void(self, charge: Charge, deadline: Deadline) -> CheckResult:
        """A void whose answer was lost, or a charge cancelled during 3-D Secure."""
        assert self._voids is not None
        try:
            result = self._voids.reconcile(charge, deadline)
        except (GatewayError, ConflictError) as exc:
            # ePay did not answer, or another path is acting on the charge: look again later.
            return self._later(self._tx.latest(charge), f"void: {type(exc).__name__}")
        if result.status is not charge.status or not result.void_pending:
            return CheckResult(result, CheckOutcome.SETTLED)
        return self._later(result, "void: the hold is not released yet")

    def _later(self, charge: Charge, reason: str) -> CheckResult:
        attempts = charge.check_attempts + 1
        if attempts >= len(CHECK_LADDER):
            return self._conclude(charge, S.NEEDS_REVIEW, f"unsettled after {attempts} checks")
        later = Change(
            Source.RECONCILER,
            next_check_at=self._clock() + CHECK_LADDER[attempts],
            check_attempts=attempts,
        )
        try:
            moved = self._tx.apply(charge, later)
        except StaleStateError:
            return CheckResult(self._tx.latest(charge), CheckOutcome.SKIPPED)
        return CheckResult(moved, CheckOutcome.RESCHEDULED, reason)

    def _conclude(self, charge: Charge, target: ChargeStatus, detail: str) -> CheckResult:
        concluded = self._settler.conclude(charge, target, detail, Source.RECONCILER)
        outcome = (
            CheckOutcome.NEEDS_REVIEW
            if concluded.status is S.NEEDS_REVIEW
            else CheckOutcome.SETTLED
        )
        return CheckResult(concluded, outcome, detail)

    @staticmethod
    def _count(report: ReconcileReport, result: CheckResult) -> None:
        report.checked += result.outcome is not CheckOutcome.SKIPPED
        if result.outcome is CheckOutcome.SETTLED:
            report.settled += 1
        elif result.outcome is CheckOutcome.RESCHEDULED:
            report.rescheduled += 1
        elif result.outcome is CheckOutcome.NEEDS_REVIEW:
            report.needs_review += 1
        else:
            report.skipped += 1


class CheckOutcome(StrEnum):
    """What one check did to a charge."""

    SETTLED = "settled"
    RESCHEDULED = "rescheduled"
    NEEDS_REVIEW = "needs_review"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckResult:
    """One charge after a check: settled, rescheduled, needs_review, unchanged or skipped."""

    charge: Charge
    outcome: CheckOutcome
    reason: str = ""


@dataclass(frozen=True)
class _Checked:
    """One listed charge after its check: how long it had waited (None: it was not due)."""

    charge_id: str
    waited: int | None
    result: CheckResult


@dataclass
class _Shard:
    """A shard during a run: its charges queued or in flight, and those checked since its last
    page was listed."""

    number: int
    pending: int = 0
    checked_since_page: int = 0


@dataclass
class _Run:
    """One run's bookkeeping: the index's charges listed (each once), those found not due."""

    now: datetime
    report: ReconcileReport = field(default_factory=ReconcileReport)
    listed: set[str] = field(default_factory=set)
    not_due: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)


class _Inline(Executor):
    """An executor that runs each task at once in the caller's thread (threads = 1)."""

    def submit[**P, T](self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller by future.result(), as a pool does
            done.set_exception(exc)
        return done


@contextmanager
def _executor(threads: int) -> Iterator[Executor]:
    if threads == 1:
        yield _Inline()
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="reconcile") as pool:
        yield pool


def _waited(charge: Charge, now: datetime) -> int | None:
    """How long a listed charge has waited for its check; None when it is not due (the index
    lagged a reschedule) or needs a person."""
    if charge.next_check_at is None or charge.next_check_at > now:
        return None
    if charge.status is S.NEEDS_REVIEW:
        return None
    return int((now - charge.next_check_at).total_seconds())


def _three_ds_expired(charge: Charge, now: datetime) -> bool:
    return charge.three_ds is None or charge.three_ds.token_expires_at <= now
