"""Settling card setups from ePay's status API: the saved card, and a paying setup's charge.

A postLink (verified like a charge's) or the reconciler asks the status API; the setup's final
state, the saved card and, for a paying setup, its charge are written in one transaction, so a
second postLink or a racing check writes nothing twice. The charge is written UNKNOWN and then
settled by the charges' own state machine (a crash in between leaves it to their reconciler).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from payments.cards.model import (
    Card,
    CardSetup,
    CardSource,
    CardStatus,
    SetupError,
    SetupMode,
    SetupStatus,
)
from payments.cards.ports import CardGateway, SetupStore
from payments.charges.model import CaptureMode, Charge, EpayRef, HistoryEntry, S, Source
from payments.charges.notifications import Notification
from payments.charges.payment_gateway import GatewayStatus, StatusResult, TransactionStatus
from payments.charges.settlement import PENDING_AT_GATEWAY
from payments.errors import DuplicateKeyError, NotFoundError, StaleStateError
from payments.shared.clock import utc_now
from payments.shared.deadline import Deadline

G = GatewayStatus
# What ends a verification well (ePay shows VERIFIED; a terminal that verifies by a hold may
# show AUTH or CHARGE of 0), and what says a first payment exists at ePay.
_VERIFIED = frozenset({G.VERIFIED, G.AUTH, G.CHARGE})
_PAID = frozenset({G.AUTH, G.CHARGE, G.CANCEL, G.CANCEL_OLD, G.REFUND})
_REFUSED = frozenset({G.REJECT, G.FAILED, G.CANCEL, G.CANCEL_OLD, G.REFUND})


class ChargeSettling(Protocol):
    """How a paying setup's new charge is settled: the charges' own state machine."""

    def apply_status(
        self, charge: Charge, answer: StatusResult, source: Source, deadline: Deadline
    ) -> object:
        """Move the charge to what the status answer says (ChargeSettler.apply_status)."""
        ...


class SetupTelemetry(Protocol):
    """Logs and metrics of card setups."""

    def setup_finished(self, setup: CardSetup) -> None:
        """A setup reached a final status."""
        ...


class SetupOutcome(StrEnum):
    """What one settle did to a setup."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"
    PENDING = "pending"


@dataclass(frozen=True)
class SetupSettlement:
    """A setup after a status check, and what the check did."""

    setup: CardSetup
    outcome: SetupOutcome


@dataclass(frozen=True)
class CardDetails:
    """What a verified postLink adds about the saved card (the status API gives only its mask)."""

    card_type: str | None = None
    issuer: str | None = None
    mask: str | None = None

    @classmethod
    def of(cls, notification: Notification | None) -> CardDetails:
        """The card fields a notification carries."""
        kept: Mapping[str, str] = notification.kept if notification else {}
        return cls(kept.get("cardType"), kept.get("issuer"), kept.get("cardMask"))


class SetupSettler:
    """Moves PENDING setups to what ePay says, once; ends the ones ePay never finished."""

    def __init__(
        self,
        *,
        store: SetupStore,
        gateway: CardGateway,
        charges: ChargeSettling,
        telemetry: SetupTelemetry,
        clock: Callable[[], datetime] = utc_now,
        new_charge_id: Callable[[], str] = lambda: "ch_" + secrets.token_hex(16),
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._charges = charges
        self._telemetry = telemetry
        self._clock = clock
        self._new_charge_id = new_charge_id

    def _get(self, setup_id: str) -> CardSetup:
        setup = self._store.get(setup_id)
        if setup is None:
            raise NotFoundError("no such card setup")
        return setup

    def find(self, invoice_id: str) -> CardSetup | None:
        """The setup holding an invoice (the postLink intake's SetupNotices)."""
        return self._store.get_by_invoice(invoice_id)

    def settle(
        self,
        setup_id: str,
        deadline: Deadline,
        vet: Callable[[StatusResult], None] | None = None,
        notification: Notification | None = None,
        source: Source = Source.POSTLINK,
    ) -> tuple[bool, str]:
        """The postLink's settle (SetupNotices): (settled, detail)."""
        done = self.check(setup_id, source, deadline, vet, CardDetails.of(notification))
        return done.outcome is not SetupOutcome.PENDING, (
            f"{done.outcome}: {done.setup.status.value}"
        )

    def check(
        self,
        setup_id: str,
        source: Source,
        deadline: Deadline,
        vet: Callable[[StatusResult], None] | None = None,
        details: CardDetails | None = None,
    ) -> SetupSettlement:
        """Ask the status API about a setup's invoice and apply the answer, once."""
        setup = self._get(setup_id)
        if not setup.open:
            return SetupSettlement(setup, SetupOutcome.UNCHANGED)
        answer = self._gateway.status(setup.invoice_id, setup.terminal_id, deadline)
        if vet is not None:
            vet(answer)
        return self.apply_status(setup, answer, source, deadline, details or CardDetails())

    def apply_status(
        self,
        setup: CardSetup,
        answer: StatusResult,
        source: Source,
        deadline: Deadline,
        details: CardDetails,
    ) -> SetupSettlement:
        """Move a PENDING setup to what ePay says; nothing while ePay says nothing final."""
        tx = answer.transaction
        status = tx.status if tx is not None else None
        if tx is None or status is None or status in PENDING_AT_GATEWAY:
            return SetupSettlement(setup, SetupOutcome.PENDING)
        if setup.mode is SetupMode.PAY and status in _PAID:
            return self._paid(setup, tx, answer, source, deadline, details)
        if setup.mode is SetupMode.VERIFY and status in _VERIFIED:
            if tx.amount not in (None, 0):
                error = SetupError("gateway_mismatch", f"ePay shows {tx.amount} for a verification")
                return self._finish(setup, tx, None, None, error)
            return self._finish(setup, tx, self._card(setup, tx, details), None, None)
        if status in _REFUSED:
            reason = tx.reason or "the card was not saved"
            code = str(tx.reason_code) if tx.reason_code is not None else "declined"
            return self._finish(setup, tx, None, None, SetupError(code, reason))
        return SetupSettlement(setup, SetupOutcome.PENDING)

    def _paid(
        self,
        setup: CardSetup,
        tx: TransactionStatus,
        answer: StatusResult,
        source: Source,
        deadline: Deadline,
        details: CardDetails,
    ) -> SetupSettlement:
        """A first payment exists at ePay: its charge is written UNKNOWN with the setup's end (so
        a crash leaves it to the reconciler), then settled by the charges' state machine."""
        now = self._clock()
        charge = Charge(
            id=self._new_charge_id(),
            invoice_id=setup.invoice_id,
            status=S.UNKNOWN,
            amount=setup.amount,
            currency=setup.currency,
            account_id=setup.account_id,
            card_id=tx.card_id or "",
            description=setup.description,
            capture=CaptureMode.AUTO,
            recurrent=False,
            language=setup.language,
            # Contains a space, which no Idempotency-Key header may: no merchant key collides.
            idempotency_key=f"setup {setup.id}",
            request_hash=setup.request_hash,
            secret_hash_digest=setup.secret_hash_digest,
            created_at=now,
            updated_at=now,
            next_check_at=now,
            terminal_id=setup.terminal_id,
            epay=EpayRef(tx.transaction_id, tx.reference, tx.approval_code, tx.card_mask),
        )
        entry = HistoryEntry(None, S.UNKNOWN, now, source, f"card setup {setup.id}: paid")
        settled = self._finish(setup, tx, self._card(setup, tx, details), (charge, entry), None)
        if settled.outcome is SetupOutcome.CHANGED:
            self._charges.apply_status(charge, answer, source, deadline)
        return settled

    def _card(self, setup: CardSetup, tx: TransactionStatus, details: CardDetails) -> Card | None:
        if not tx.card_id:
            return None
        now = self._clock()
        return Card(
            id=tx.card_id,
            account_id=setup.account_id,
            status=CardStatus.ACTIVE,
            source=CardSource.SETUP,
            created_at=now,
            updated_at=now,
            mask=tx.card_mask or details.mask,
            card_type=details.card_type,
            issuer=details.issuer,
            setup_id=setup.id,
        )

    def _finish(
        self,
        setup: CardSetup,
        tx: TransactionStatus,
        card: Card | None,
        charge: tuple[Charge, HistoryEntry] | None,
        error: SetupError | None,
    ) -> SetupSettlement:
        """Write the setup's final state with its card and charge; a racing writer's state
        wins (UNCHANGED)."""
        if error is None and card is None:
            error = SetupError("card_not_saved", "ePay did not save the card")
        updated = replace(
            setup,
            status=SetupStatus.FAILED if error else SetupStatus.SUCCEEDED,
            error=error,
            card_id=card.id if card else None,
            card_mask=tx.card_mask,
            charge_id=charge[0].id if charge else None,
            transaction_id=tx.transaction_id,
            next_check_at=None,
            updated_at=self._clock(),
        )
        try:
            try:
                stored = self._store.complete(setup, updated, card, charge)
            except DuplicateKeyError as exc:
                if exc.which != "card":
                    raise
                # ePay's card id is already saved under another account: not this one's card.
                mismatch = SetupError(
                    "card_account_mismatch", "the card belongs to another account"
                )
                stored = self._store.complete(
                    setup,
                    replace(updated, status=SetupStatus.FAILED, error=mismatch, card_id=None),
                    None,
                    charge,
                )
        except StaleStateError:
            return SetupSettlement(self._get(setup.id), SetupOutcome.UNCHANGED)
        self._telemetry.setup_finished(stored)
        return SetupSettlement(stored, SetupOutcome.CHANGED)

    def end(self, setup: CardSetup, status: SetupStatus, error: SetupError) -> CardSetup:
        """End a setup without ePay's word (it expired); a racing writer's state wins."""
        updated = replace(
            setup, status=status, error=error, next_check_at=None, updated_at=self._clock()
        )
        try:
            stored = self._store.save(setup, updated)
        except StaleStateError:
            return self._get(setup.id)
        self._telemetry.setup_finished(stored)
        return stored

    def reschedule(self, setup: CardSetup, at: datetime) -> CardSetup:
        """Put the setup's next check at `at` (one more rung of the ladder)."""
        updated = replace(setup, next_check_at=at, check_attempts=setup.check_attempts + 1)
        try:
            return self._store.save(setup, updated)
        except StaleStateError:
            return self._get(setup.id)
