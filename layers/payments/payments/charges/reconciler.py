"""The reconciler: finds charges due for a check and settles them from ePay's status API.

Nothing is ever re-sent: an unclear charge is only asked about. Each unsuccessful check moves the
next one up a backoff ladder; after the last rung a person must look (NEEDS_REVIEW).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from payments.charges.model import (
    CHECK_LADDER,
    DUE_SHARDS,
    PENDING_FINAL_AGE,
    Charge,
    ChargeStatus,
    Source,
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
    """Checks due charges, each through ChargeSettler.settle, so every path shares one machine."""

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
    ) -> None:
        self._store = store
        self._terminals = terminals  # learns the terminal's code from the status answers
        self._voids = voids  # finishes voids whose answer was lost
        self._settler = settler
        self._tx = transitions
        self._clock = clock
        self._shards = shards
        self._batch = batch_size

    def run(self, deadline: Deadline) -> ReconcileReport:
        """Check every charge due now, shard by shard, until done or the deadline nears."""
        report = ReconcileReport()
        now = self._clock()
        # The backlog: every id the index listed as due, once, less those found not due on
        # reading them (the index is eventually consistent). No extra read: the run's own pages.
        listed: set[str] = set()
        not_due: set[str] = set()
        for shard in range(self._shards):
            seen: set[str] = set()
            while deadline.remaining() > MIN_SECONDS_PER_CHECK:
                # The index lags the table, so a page may repeat charges checked a moment ago.
                page = [
                    i for i in self._store.due_charge_ids(shard, now, self._batch) if i not in seen
                ]
                if not page:
                    break
                listed.update(page)
                report.due = len(listed) - len(not_due)
                for charge_id in page:
                    if deadline.remaining() <= MIN_SECONDS_PER_CHECK:
                        return report
                    seen.add(charge_id)
                    charge = self._read(charge_id)
                    if not _note_waiting(report, charge, now):
                        not_due.add(charge_id)  # the index lagged: not part of the backlog
                        report.due = len(listed) - len(not_due)
                    self._count(report, self._check(charge, deadline, forced=False))
        return report

    def check(self, charge_id: str, deadline: Deadline, *, forced: bool) -> CheckResult:
        """Check one charge now if it is due (or if `forced`, as on demand)."""
        return self._check(self._read(charge_id), deadline, forced=forced)

    def _read(self, charge_id: str) -> Charge:
        charge = self._store.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        return charge

    def _check(self, charge: Charge, deadline: Deadline, *, forced: bool) -> CheckResult:
        charge_id = charge.id
        now = self._clock()
        due = charge.next_check_at is not None and charge.next_check_at <= now
        if not (due or forced) or charge.status is S.NEEDS_REVIEW:
            return CheckResult(charge, CheckOutcome.SKIPPED)
        if charge.void_pending and self._voids is not None:
            return self._finish_void(charge, deadline)
        try:
            settlement = self._settler.settle(charge_id, Source.RECONCILER, deadline)
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


def _note_waiting(report: ReconcileReport, charge: Charge, now: datetime) -> bool:
    """Keep the longest wait of a due charge; False for one the index listed that is not due."""
    if charge.next_check_at is None or charge.next_check_at > now:
        return False
    if charge.status is S.NEEDS_REVIEW:
        return False
    waited = int((now - charge.next_check_at).total_seconds())
    report.oldest_due_seconds = max(report.oldest_due_seconds, waited)
    return True


def _three_ds_expired(charge: Charge, now: datetime) -> bool:
    return charge.three_ds is None or charge.three_ds.token_expires_at <= now
