"""The renewal policy: the soft-decline retry ladder and what happens when it runs out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from payments.errors import (
    ConfigurationError,
)
from payments.subscriptions.model import FinalAction

# --- configuration of renewals ------------------------------------------------------------------

_DURATION_RE = re.compile(r"\A([0-9]{1,4})([mhd])\Z")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_ladder(value: str) -> tuple[timedelta, ...]:
    """`"1d,3d,5d"` -> the delays after the 1st, 2nd and 3rd soft decline (m, h or d)."""
    rungs = []
    for part in value.split(","):
        match = _DURATION_RE.match(part.strip())
        if match is None or int(match.group(1)) == 0:
            raise ConfigurationError(
                "RENEWAL_RETRY_LADDER must be comma-separated durations like 1d,3d,5d (m, h, d)"
            )
        rungs.append(int(match.group(1)) * _UNITS[match.group(2)])
    if not 1 <= len(rungs) <= 10:
        raise ConfigurationError("RENEWAL_RETRY_LADDER must have 1 to 10 rungs")
    return tuple(rungs)


@dataclass(frozen=True)
class RenewalPolicy:
    """How renewals retry: the soft-decline ladder, what follows it, and re-check delays."""

    ladder: tuple[timedelta, ...] = (timedelta(days=1), timedelta(days=3), timedelta(days=5))
    final_action: FinalAction = FinalAction.UNPAID
    # A cycle whose charge waits for the customer (3DS) or for the reconciler (UNKNOWN) is looked
    # at again after this; its message replays the same charge, so nothing is charged twice.
    pending_recheck: timedelta = timedelta(minutes=15)
    review_recheck: timedelta = timedelta(hours=6)
    # ePay unreachable (nothing charged): a new attempt after this, not counted as a decline.
    outage_retry: timedelta = timedelta(minutes=5)
    # A dispatched cycle nobody recorded an outcome for (lost send, DLQ) is dispatched again.
    lease: timedelta = timedelta(hours=6)
    # How long the writer of an outcome alone may publish its events before a redelivery may.
    publish_lease: timedelta = timedelta(minutes=2)


def load_renewal_policy(env: Mapping[str, str]) -> RenewalPolicy:
    """RENEWAL_RETRY_LADDER (default 1d,3d,5d) and RENEWAL_FINAL_ACTION (unpaid|cancelled)."""
    ladder = parse_ladder(env.get("RENEWAL_RETRY_LADDER") or "1d,3d,5d")
    final = (env.get("RENEWAL_FINAL_ACTION") or FinalAction.UNPAID.value).strip().lower()
    if final not in {a.value for a in FinalAction}:
        raise ConfigurationError("RENEWAL_FINAL_ACTION must be unpaid or cancelled")
    return RenewalPolicy(ladder=ladder, final_action=FinalAction(final))
