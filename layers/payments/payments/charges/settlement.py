"""TODO docstring for charges.settlement."""

from __future__ import annotations

from dataclasses import dataclass

from payments.charges.model import (
    Charge,
    ChargeStatus,
)


@dataclass(frozen=True)
class Settlement:
    """What a status check did: changed, unchanged, pending (ask later) or not_found (102)."""

    charge: Charge
    outcome: str
    gateway_status: str | None = None


_STATUS_TARGETS = {
    "AUTH": ChargeStatus.AUTHORIZED,
    "CHARGE": ChargeStatus.CAPTURED,
    "CANCEL": ChargeStatus.CANCELLED,
    "CANCEL_OLD": ChargeStatus.EXPIRED,
    "REFUND": ChargeStatus.REFUNDED,
    "REJECT": ChargeStatus.DECLINED,
    "FAILED": ChargeStatus.DECLINED,
}
