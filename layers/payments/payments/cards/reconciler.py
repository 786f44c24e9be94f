"""Settles card setups nobody else settled: abandoned pages expire, opened ones are checked.

A setup whose page was never opened cannot exist at ePay (no token was ever issued for its
invoice), so at expiry it simply ends EXPIRED. One whose page was opened is asked about on a
ladder (its postLink may be lost or late) until ePay's word is final, or it is EXPIRED once no
ePay token of that visit can still be alive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from payments.cards.model import (
    SETUP_CHECK_LADDER,
    SETUP_DUE_SHARDS,
    SETUP_PENDING_FINAL_AGE,
    SetupError,
    SetupStatus,
)
from payments.cards.ports import SetupStore
from payments.cards.settlement import SetupOutcome, SetupSettler
from payments.charges.model import Source
from payments.errors import GatewayError
from payments.shared.clock import utc_now
from payments.shared.deadline import Deadline

PAGE_SIZE = 50
MIN_SECONDS_PER_CHECK = 2.0


@dataclass
class SetupReport:
    """What one reconciler run did to setups."""

    checked: int = 0
    expired: int = 0
    settled: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class SetupReconciler:
    """Expires abandoned setups and settles opened ones from ePay's status API."""

    def __init__(
        self,
        *,
        store: SetupStore,
        setups: SetupSettler,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._setups = setups
        self._clock = clock

    def run(self, deadline: Deadline) -> SetupReport:
        """Check every due setup of every shard while time allows."""
        report = SetupReport()
        now = self._clock()
        for shard in range(SETUP_DUE_SHARDS):
            for setup_id in self._store.due_setup_ids(shard, now, PAGE_SIZE):
                if deadline.remaining() < MIN_SECONDS_PER_CHECK:
                    return report
                self.check(setup_id, deadline, report)
        return report

    @property
    def shard_count(self) -> int:
        """How many shards the due index has for card setups (SDUE#0..n-1)."""
        return SETUP_DUE_SHARDS

    def has_due(self, shard: int, now: datetime) -> bool:
        """Whether the index lists a setup of this shard as due (it may lag: a hint)."""
        return bool(self._store.due_setup_ids(shard, now, 1))

    def run_shard(self, shard: int, deadline: Deadline) -> SetupReport:
        """Check every setup of one shard due now (a fan-out unit), page after page, while time
        allows; each setup once."""
        report = SetupReport()
        now, checked = self._clock(), 0
        seen: set[str] = set()
        while deadline.remaining() >= MIN_SECONDS_PER_CHECK:
            # Those just checked may still be listed (the index lags): ask for that many more.
            limit = PAGE_SIZE + min(checked, PAGE_SIZE)
            listed = self._store.due_setup_ids(shard, now, limit)
            page = [setup_id for setup_id in listed if setup_id not in seen]
            before = len(seen)
            for setup_id in page:
                if deadline.remaining() < MIN_SECONDS_PER_CHECK:
                    break
                seen.add(setup_id)
                self.check(setup_id, deadline, report)
            checked = len(seen) - before
            if not page or len(listed) < limit:
                break
        return report

    def check(self, setup_id: str, deadline: Deadline, report: SetupReport) -> None:
        """One due setup: expire it, settle it, or put its next check further up the ladder."""
        setup = self._store.get(setup_id)
        now = self._clock()
        if setup is None or not setup.open or setup.next_check_at is None:
            return
        if setup.next_check_at > now:
            return  # the index is eventually consistent: someone rescheduled it meanwhile
        report.checked += 1
        if setup.page_served_at is None:
            if now >= setup.expires_at:
                self._setups.end(setup, SetupStatus.EXPIRED, _expired("the page was not opened"))
                report.expired += 1
            else:
                self._setups.reschedule(setup, setup.expires_at)
            return
        try:
            settled = self._setups.check(setup.id, Source.RECONCILER, deadline)
        except GatewayError as exc:
            name = type(exc).__name__
            report.errors[name] = report.errors.get(name, 0) + 1
            self._setups.reschedule(setup, now + _rung(setup.check_attempts))
            return
        if settled.outcome is not SetupOutcome.PENDING:
            # UNCHANGED: a postLink or another run settled it meanwhile (not this run's doing).
            report.settled += settled.outcome is SetupOutcome.CHANGED
            return
        if now - setup.page_served_at >= SETUP_PENDING_FINAL_AGE:
            self._setups.end(
                settled.setup, SetupStatus.EXPIRED, _expired("ePay never finished the payment")
            )
            report.expired += 1
            return
        self._setups.reschedule(settled.setup, now + _rung(setup.check_attempts + 1))


def _rung(attempts: int) -> timedelta:
    return SETUP_CHECK_LADDER[min(attempts, len(SETUP_CHECK_LADDER) - 1)]


def _expired(message: str) -> SetupError:
    return SetupError("expired", message)
