"""Settles PENDING refunds from ePay's status API: the reconciler's part for refunds.

ePay's status shows a transaction's total returned to the card (`payoutAmount`; `orgAmount` -
`amount`; all of it once `statusName` is REFUND), not which refund returned it. So: what ePay
returned beyond our SUCCEEDED refunds must be exactly the sum of one set of PENDING refunds.
- exactly one set matches: those SUCCEEDED; the others are not shown (yet);
- nothing beyond: none is shown;
- no set, or several, match: the refund goes to NEEDS_REVIEW, never to a guess.
A refund not shown NOT_SHOWN_FINAL_AGE after it was created did not happen: FAILED, released.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from itertools import combinations
from typing import TYPE_CHECKING

from payments.charges.model import Charge, Source
from payments.charges.payment_gateway import GatewayStatus, StatusResult
from payments.errors import GatewayError, StaleStateError
from payments.refunds.model import (
    NOT_SHOWN_FINAL_AGE,
    REFUND_CHECK_LADDER,
    REFUND_DUE_SHARDS,
    Refund,
    RefundError,
    RefundStatus,
)
from payments.shared.clock import utc_now

if TYPE_CHECKING:
    from payments.charges.ports import ChargeStore
    from payments.refunds.ports import RefundStore
    from payments.refunds.service import RefundService
    from payments.shared.deadline import Deadline

MAX_PENDING_SETS = 12  # pending refunds of one charge whose subsets are tried
# A refund younger than this may still be on its way (its request's function is still running,
# below API Gateway's 29 s): its charge's total is read again later.
IN_FLIGHT = timedelta(seconds=30)
BATCH = 25


class RefundCheck(StrEnum):
    """What one check of a refund did."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NEEDS_REVIEW = "needs_review"
    LATER = "later"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class RefundReport:
    """How many refunds one run checked, by outcome."""

    checked: dict[RefundCheck, int]


def returned_by_epay(answer: StatusResult) -> Decimal | None:
    """What ePay says went back to the card in all, or None when its answer cannot tell."""
    tx = answer.transaction
    if tx is None:
        return None
    amounts = tx.amounts
    if amounts.returned is not None:
        return amounts.returned
    if tx.status is GatewayStatus.REFUND:
        return amounts.made_for
    if amounts.original is not None and amounts.current is not None:
        return amounts.original - amounts.current
    return Decimal(0) if tx.status is GatewayStatus.CHARGE else None


def shown(extra: Decimal, pending: Sequence[Refund]) -> list[frozenset[str]]:
    """The sets of pending refunds (ids) whose amounts add up to `extra`."""
    found: list[frozenset[str]] = []
    for size in range(len(pending) + 1):
        for subset in combinations(pending, size):
            if sum((r.amount for r in subset), Decimal(0)) == extra:
                found.append(frozenset(r.id for r in subset))
    return found


class RefundReconciler:
    """Checks due PENDING refunds against ePay's status and settles them through the service."""

    def __init__(
        self,
        *,
        store: RefundStore,
        charges: ChargeStore,
        service: RefundService,
        status: Callable[[str, str, Deadline], StatusResult],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._charges = charges
        self._service = service
        self._status = status
        self._clock = clock

    def run(self, deadline: Deadline) -> RefundReport:
        """Check every due refund of every shard (in turn), while time is left."""
        counts = dict.fromkeys(RefundCheck, 0)
        for shard in range(REFUND_DUE_SHARDS):
            for _, refund_id in self._store.due(shard, self._clock(), BATCH):
                if deadline.remaining() < 3:
                    return RefundReport(counts)
                counts[self.check(refund_id, deadline)] += 1
        return RefundReport(counts)

    @property
    def shard_count(self) -> int:
        """How many shards the due index has for refunds (RDUE#0..n-1)."""
        return REFUND_DUE_SHARDS

    def has_due(self, shard: int, now: datetime) -> bool:
        """Whether the index lists a refund of this shard as due (it may lag: a hint)."""
        return bool(self._store.due(shard, now, 1))

    def run_shard(self, shard: int, deadline: Deadline) -> RefundReport:
        """Check every refund of one shard due now (a fan-out unit), page after page, while
        time is left; each refund once."""
        counts = dict.fromkeys(RefundCheck, 0)
        now, checked = self._clock(), 0
        seen: set[str] = set()
        while deadline.remaining() >= 3:
            # Those just checked may still be listed (the index lags): ask for that many more.
            limit = BATCH + min(checked, BATCH)
            listed = self._store.due(shard, now, limit)
            page = [refund_id for _, refund_id in listed if refund_id not in seen]
            before = len(seen)
            for refund_id in page:
                if deadline.remaining() < 3:
                    break
                seen.add(refund_id)
                counts[self.check(refund_id, deadline)] += 1
            checked = len(seen) - before
            if not page or len(listed) < limit:
                break
        return RefundReport(counts)

    def check(self, refund_id: str, deadline: Deadline) -> RefundCheck:
        """Settle one refund if ePay's status accounts for it; else check it later."""
        refund = self._store.get(refund_id)
        now = self._clock()
        if refund is None or refund.status is not RefundStatus.PENDING:
            return RefundCheck.SKIPPED
        charge = self._charges.get(refund.charge_id)
        if charge is None:
            return RefundCheck.SKIPPED
        try:
            answer = self._status(charge.invoice_id, charge.terminal_id, deadline)
        except GatewayError:
            return self._later(refund, now)
        returned = returned_by_epay(answer)
        if returned is None:
            return self._later(refund, now)
        return self._account(refund, charge, returned, now)

    def _account(
        self, refund: Refund, charge: Charge, returned: Decimal, now: datetime
    ) -> RefundCheck:
        # Read after ePay's answer, and summed from the same list as the pending ones, so a
        # sibling settled meanwhile is on both sides of the sum.
        refunds = self._store.list_for_charge(charge.id)
        pending = [r for r in refunds if r.status is RefundStatus.PENDING]
        if any(now - r.created_at < IN_FLIGHT for r in pending):
            return self._later(refund, now)  # a refund may be on its way to ePay right now
        succeeded = sum(
            (r.amount for r in refunds if r.status is RefundStatus.SUCCEEDED), Decimal(0)
        )
        extra = returned - succeeded
        sets = shown(extra, pending) if len(pending) <= MAX_PENDING_SETS else []
        if len(sets) != 1:
            # Every pending refund of the charge is in doubt: settling any one of them later
            # against the same total would be a guess too.
            why = (
                f"ePay shows {returned} returned; ours: {succeeded} succeeded and "
                f"{len(pending)} pending that {'do not' if not sets else 'in several ways'} add up"
            )
            for doubtful in pending:
                self._service.review(doubtful, why)
            return RefundCheck.NEEDS_REVIEW
        if refund.id in sets[0]:
            self._service.succeed(refund, Source.RECONCILER)
            return RefundCheck.SUCCEEDED
        if now - refund.created_at >= NOT_SHOWN_FINAL_AGE:
            error = RefundError("not_at_epay", "ePay's status shows no such refund")
            self._service.fail(refund, error, Source.RECONCILER)
            return RefundCheck.FAILED
        return self._later(refund, now)

    def _later(self, refund: Refund, now: datetime) -> RefundCheck:
        """The next check, up the ladder (the last rung repeats)."""
        rung = REFUND_CHECK_LADDER[min(refund.check_attempts + 1, len(REFUND_CHECK_LADDER) - 1)]
        after = replace(
            refund,
            version=refund.version + 1,
            check_attempts=refund.check_attempts + 1,
            next_check_at=now + rung,
        )
        with contextlib.suppress(StaleStateError):  # settled or rescheduled meanwhile
            self._store.update(refund, after)
        return RefundCheck.LATER
