"""TODO docstring for charges.transitions."""

from __future__ import annotations

from datetime import datetime

from payments.charges.model import (
    CHECK_LADDER,
    PROCESSING_SAFE_AGE,
    Charge,
    EpayRef,
    S,
)


def _merge_epay(old: EpayRef, new: EpayRef | None) -> EpayRef:
    if new is None:
        return old
    return EpayRef(
        transaction_id=new.transaction_id or old.transaction_id,
        reference=new.reference or old.reference,
        approval_code=new.approval_code or old.approval_code,
        card_mask=new.card_mask or old.card_mask,
    )


def _first_check(charge: Charge, now: datetime) -> datetime | None:
    """When the reconciler should first look at a charge in this state (None: never)."""
    if charge.status is S.PROCESSING:
        return charge.created_at + PROCESSING_SAFE_AGE
    if charge.status is S.UNKNOWN:
        return now + CHECK_LADDER[0]
    if charge.status is S.REQUIRES_3DS:
        expiry = charge.three_ds.token_expires_at if charge.three_ds else now
        return expiry + CHECK_LADDER[0]
    if charge.status is S.AUTHORIZED and charge.capture_pending:
        return now + CHECK_LADDER[0]
    return None
