"""postLink intake (epay-api.md section 6): parse tolerantly, store first, verify, then settle.

A notification is a hint, never a fact. ePay does not sign it; the only secret in it is the
`secret_hash` chosen for that charge, of which only a digest is kept. The intake therefore:

1. refuses bodies over `MAX_NOTIFICATION_BYTES` (413, nothing stored);
2. parses the body tolerantly (JSON, or a urlencoded form; keys in any case; `reasonCode` a
   number or a string; unknown fields ignored); a body that is not a notification is answered
   400 and counted, never stored (anyone could fill the table with junk);
3. stores a well-formed one in the inbox (keyed by its invoice id and the SHA-256 of the exact
   body, so a byte-identical repeat is a duplicate) *before* anything acts on it: only what
   verification and audit need (ePay's fields, card id masked; no secret, no payer contacts or
   location);
4. finds the charge by invoice id (unknown: 200, kept for review, no retries invited);
5. verifies `secret_hash` in constant time against the charge's digest, and `invoiceId`, `amount`,
   `currency` and `terminal` against the charge (any mismatch: 403, nothing changes). The
   terminal may be named by its UUID or its 8-digit code (charges.terminals), or be absent;
   a code not learned yet is confirmed by the status answer before anything is applied;
6. settles the charge from ePay's status API through `ChargeSettler.settle` (the one state
   machine), within a short deadline, learning the terminal's code from the answer; if ePay
   cannot answer in time the charge keeps its reconciler schedule and the answer is still 200.

The common case costs one read and one write: the charge is read by the id its `secret_hash`
begins with (`charge_secret_hash`), and a notification that tells of the outcome the charge
already holds (an approval of a captured charge, a failure of a declined one) is stored with its
verdict in the same write, with no status call. A forged one is stored as forged the same way.
A contradiction, or a charge not settled yet, goes through steps 3 to 6; step 6 reads the
charge again first, and one settled meanwhile as the notification says (by the request that made
it, whose answer the postLink raced) is not asked of ePay either.

A duplicate whose stored verdict is final (forged, unknown invoice, settled) is answered
from that verdict without calling ePay; any other duplicate (still being handled, deferred,
pending) is handled again, which is safe because settling is idempotent. An operator may
`replay` a stored notification: the same verification (the kept digest of its secret_hash
against the charge's) and the same settling, its verdict updated.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from payments.charges.inbox_records import (
    FINAL_VERDICTS,
    Inbox,
    InboxRecord,
    PostLinkOutcome,
    PostLinkTelemetry,
    Verdict,
    inbox_id_for,
)
from payments.charges.model import (
    Charge,
    ChargeStatus,
    Source,
    capture_in_flight,
    charge_id_hint,
    secret_hash_digest,
)
from payments.charges.notifications import (
    MAX_NOTIFICATION_BYTES,
    Delivery,
    Invoiced,
    Notification,
    _too_large,
    parse_notification,
    verify,
)
from payments.charges.payment_gateway import StatusResult, TransactionStatus
from payments.charges.ports import ChargeStore
from payments.charges.settlement import Settlement, SettleOutcome
from payments.charges.terminals import TerminalNames
from payments.errors import (
    ForgedNotificationError,
    GatewayError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from payments.shared.clock import utc_now
from payments.shared.deadline import Deadline

SETTLE_BUDGET_SECONDS = 8.0
# A copy arriving while the first is still being handled (younger than this, above the function's
# 15 s timeout) is answered 200 without a second settle; an older `received` one is handled again.
IN_FLIGHT = timedelta(seconds=30)
# What an approval (`code: ok`) agrees with: the money was held, and the charge moved on from it.
_AGREES_WITH_APPROVAL = frozenset(
    {
        ChargeStatus.AUTHORIZED,
        ChargeStatus.CAPTURED,
        ChargeStatus.PARTIALLY_REFUNDED,
        ChargeStatus.REFUNDED,
        ChargeStatus.CANCELLED,
    }
)


class Settler(Protocol):
    """The one way any signal settles a charge (ChargeSettler.settle_charge)."""

    def settle_charge(
        self,
        charge: Charge,
        source: Source,
        deadline: Deadline,
        vet: Callable[[StatusResult], None] | None = None,
    ) -> Settlement:
        """Ask the status API about a charge just read, let `vet` refuse the answer, apply it
        through the state machine."""
        ...


class Terminals(Protocol):
    """Our terminals' names, and learning their codes from status answers (TerminalCodes)."""

    def names(self, charge_terminal: str) -> TerminalNames:
        """The UUID of a charge's terminal, and its code once learned."""
        ...

    def learn(self, transaction: TransactionStatus | None, charge_terminal: str) -> str | None:
        """Keep the code a status answer gives beside the charge's terminal's UUID."""
        ...


Vet = Callable[[StatusResult], None]


class SetupNotices(Protocol):
    """Invoices held by card setups (payments.cards): their postLinks are verified exactly like
    a charge's, then settle the setup through the status API."""

    def find(self, invoice_id: str) -> Invoiced | None:
        """The setup holding this invoice, or None."""
        ...

    def settle(
        self, setup_id: str, deadline: Deadline, vet: Vet, notification: Notification
    ) -> tuple[bool, str]:
        """Settle the setup from the status API (`vet` sees the answer first); (settled, detail).
        The verified notification adds what the status API does not tell (card type, issuer)."""
        ...


class PostLinkService:
    """Takes ePay's postLink notifications in: store, verify, settle through the status API."""

    def __init__(
        self,
        *,
        inbox: Inbox,
        charges: ChargeStore,
        settler: Settler,
        terminals: Terminals,
        telemetry: PostLinkTelemetry,
        clock: Callable[[], datetime] = utc_now,
        settle_budget: float = SETTLE_BUDGET_SECONDS,
        setups: SetupNotices | None = None,
    ) -> None:
        self._setups = setups
        self._inbox = inbox
        self._charges = charges
        self._settler = settler
        self._terminals = terminals
        self._telemetry = telemetry
        self._clock = clock
        self._settle_budget = settle_budget

    def receive(self, delivery: Delivery, deadline: Deadline) -> PostLinkOutcome:
        """Store, verify and act on one delivery.

        Returns the outcome for a 200 answer; raises PayloadTooLargeError (413), ValidationError
        (400) or ForgedNotificationError (403, stored). Only a well-formed notification is stored
        (before anything acts on it): junk is answered and counted, never written, so nobody can
        fill the table with it.
        """
        if len(delivery.body) > MAX_NOTIFICATION_BYTES:
            raise PayloadTooLargeError(_too_large())
        try:
            notification = parse_notification(delivery.body, delivery.content_type)
        except ValidationError as problem:
            malformed = PostLinkOutcome(
                Verdict.MALFORMED,
                delivery.route,
                duplicate=False,
                source_ip=delivery.source_ip,
                detail=", ".join(sorted(problem.fields)),
            )
            return self._answer(malformed, problem)

        digest = hashlib.sha256(delivery.body).hexdigest()
        now = self._clock()
        charge = self._charge_of(notification)
        known = self._known_answer(notification, delivery, charge)
        record = InboxRecord(
            digest=digest,
            notification=notification.kept,
            content_type=delivery.content_type,
            route=delivery.route,
            source_ip=delivery.source_ip,
            received_at=now,
            verdict=known.verdict if known else Verdict.RECEIVED,
            invoice_id=notification.invoice_id,
            secret_hash_digest=secret_hash_digest(notification.secret_hash)
            if notification.secret_hash
            else None,
        )
        stored = self._inbox.keep(
            record,
            charge_id=known.charge_id if known else None,
            detail=known.detail if known else "",
        )
        if stored is not None:
            in_flight = stored.verdict is Verdict.RECEIVED and now - stored.received_at < IN_FLIGHT
            if stored.verdict in FINAL_VERDICTS or in_flight:
                outcome = PostLinkOutcome(
                    verdict=stored.verdict,
                    route=delivery.route,
                    duplicate=True,
                    invoice_id=record.invoice_id,
                    charge_id=stored.charge_id,
                    source_ip=delivery.source_ip,
                    detail=stored.detail,
                )
                return self._answer(outcome, None)
        elif known is not None:
            # Stored with its verdict already: nothing to settle, nothing more to write.
            return self._answer(known, None)

        outcome = self._handle(
            notification, delivery, stored is not None, deadline, charge, delivered=True
        )
        self._inbox.record_verdict(
            inbox_id_for(record.invoice_id, digest),
            outcome.verdict,
            self._clock(),
            charge_id=outcome.charge_id,
            detail=outcome.detail,
        )
        return self._answer(outcome, None)

    def _charge_of(self, notification: Notification) -> Charge | None:
        """The charge holding the notification's invoice: read by the id its secret_hash begins
        with (one read), else through the invoice (a charge made before ids led the secret, or
        none: a card setup's invoice)."""
        hinted = charge_id_hint(notification.secret_hash)
        if hinted is not None:
            charge = self._charges.get(hinted)
            if charge is not None and charge.invoice_id == notification.invoice_id:
                return charge
        return self._charges.get_by_invoice(notification.invoice_id)

    def _known_answer(
        self, notification: Notification, delivery: Delivery, charge: Charge | None
    ) -> PostLinkOutcome | None:
        """What a delivery comes to without asking ePay: forged against its charge, or telling
        of the outcome the charge already holds (`_agrees`). None: the status API decides."""
        if charge is None:
            return None
        base = PostLinkOutcome(
            verdict=Verdict.RECEIVED,
            route=delivery.route,
            duplicate=False,
            invoice_id=notification.invoice_id,
            charge_id=charge.id,
            status=charge.status,
            source_ip=delivery.source_ip,
        )
        names = self._terminals.names(charge.terminal_id)
        mismatched = verify(notification, charge, names)
        if mismatched:
            return _forged(base, mismatched)
        if names.to_confirm(notification.terminal) or not _agrees(
            notification, charge, self._clock()
        ):
            return None
        return _with(base, verdict=Verdict.SETTLED, detail=f"agrees: {charge.status.value}")

    def replay(self, inbox_id: str, operator: str, deadline: Deadline) -> PostLinkOutcome:
        """Handle a stored notification again, for an operator (`POST /postlinks/{id}/replay`).

        The inbox kept its fields and the digest of its secret_hash (never the secret): it is
        read by the same parser and verified and settled by the same code as a delivery (the
        secret compared digest to digest), and its verdict is updated, naming the operator.
        A forged one stays forged (answered, not raised: the replay itself is not a forgery,
        and it is not counted as one). NotFoundError when nothing is kept under `inbox_id`.
        """
        record = self._inbox.stored(inbox_id)
        if record is None:
            raise NotFoundError("no such postLink")
        delivery = Delivery(b"", record.content_type, record.route, record.source_ip)
        try:
            notification = Notification.stored(record.notification, record.secret_hash_digest)
        except ValidationError as problem:
            outcome = PostLinkOutcome(
                Verdict.MALFORMED,
                record.route,
                duplicate=True,
                invoice_id=record.invoice_id,
                source_ip=record.source_ip,
                detail=", ".join(sorted(problem.fields)),
            )
        else:
            outcome = self._handle(notification, delivery, True, deadline)
        self._inbox.record_verdict(
            inbox_id,
            outcome.verdict,
            self._clock(),
            charge_id=outcome.charge_id,
            detail=outcome.detail,
            replayed_by=operator,
        )
        return outcome

    def _handle(
        self,
        notification: Notification,
        delivery: Delivery,
        duplicate: bool,
        deadline: Deadline,
        charge: Charge | None = None,
        *,
        delivered: bool = False,
    ) -> PostLinkOutcome:
        """Verify a notification and settle what holds its invoice. A delivery (`delivered`)
        of an approval or failure the charge holds by now is not asked of ePay; an operator's
        replay always is."""
        base = PostLinkOutcome(
            verdict=Verdict.RECEIVED,
            route=delivery.route,
            duplicate=duplicate,
            invoice_id=notification.invoice_id,
            source_ip=delivery.source_ip,
        )
        if charge is None:
            charge = self._charges.get_by_invoice(notification.invoice_id)
        if charge is not None:
            base = _with(base, charge_id=charge.id, status=charge.status)
            target = charge

            def settle_charge(bounded: Deadline, vet: Vet) -> tuple[bool, str, ChargeStatus]:
                # Read again now the notification is stored: the request that made the charge
                # may have recorded ePay's answer meanwhile (a postLink racing its own charge's
                # answer), and what already agrees needs no status call (`_known_answer`).
                fresh = self._charges.get(target.id)
                if fresh is None:
                    raise NotFoundError("no such charge")
                confirmed = not self._terminals.names(fresh.terminal_id).to_confirm(
                    notification.terminal
                )
                if delivered and confirmed and _agrees(notification, fresh, self._clock()):
                    return True, f"agrees: {fresh.status.value}", fresh.status
                settlement = self._settler.settle_charge(fresh, Source.POSTLINK, bounded, vet=vet)
                settled = settlement.outcome in {SettleOutcome.CHANGED, SettleOutcome.UNCHANGED}
                status = settlement.charge.status
                return settled, f"{settlement.outcome}: {status.value}", status

            return self._verified(notification, charge, base, deadline, settle_charge)
        setup = self._setups.find(notification.invoice_id) if self._setups else None
        if setup is None or self._setups is None:
            return _with(base, verdict=Verdict.UNKNOWN_INVOICE, detail="no charge has this invoice")
        setups = self._setups
        base = _with(base, charge_id=setup.id)

        def settle_setup(bounded: Deadline, vet: Vet) -> tuple[bool, str, ChargeStatus | None]:
            settled, detail = setups.settle(setup.id, bounded, vet, notification)
            return settled, detail, None

        return self._verified(notification, setup, base, deadline, settle_setup)

    def _verified(
        self,
        notification: Notification,
        holder: Invoiced,
        base: PostLinkOutcome,
        deadline: Deadline,
        settle: Callable[[Deadline, Vet], tuple[bool, str, ChargeStatus | None]],
    ) -> PostLinkOutcome:
        """Verify a notification against what holds its invoice (a charge or a card setup),
        then settle that through the status API."""
        # Checked against the holder's own terminal: a notification naming another of our
        # terminals is as forged as one naming a stranger's.
        names = self._terminals.names(holder.terminal_id)
        mismatched = verify(notification, holder, names)
        if mismatched:
            return _forged(base, mismatched)
        unconfirmed = notification.terminal if names.to_confirm(notification.terminal) else None
        try:
            settled, detail, status = settle(
                self._bounded(deadline),
                lambda answer: self._vet(answer, unconfirmed, holder.terminal_id),
            )
        except ForgedNotificationError as exc:
            return _forged(base, exc.mismatched)
        except GatewayError as exc:
            # The charge (or setup) keeps its next check: the reconciler settles it later.
            return _with(base, verdict=Verdict.DEFERRED, detail=f"status API: {type(exc).__name__}")
        verdict = Verdict.SETTLED if settled else Verdict.PENDING
        return _with(base, verdict=verdict, status=status or base.status, detail=detail)

    def _vet(self, answer: StatusResult, unconfirmed: str | None, charge_terminal: str) -> None:
        """Before the status answer is applied: a terminal code we had not learned must be the
        one the answer names beside our UUID (else the notification is forged); then learn the
        code the answer gives."""
        tx = answer.transaction
        code = tx.terminal_code if tx is not None else None
        if unconfirmed is not None and code is not None and code.strip() != unconfirmed:
            raise ForgedNotificationError("the notification was rejected", ("terminal",))
        self._terminals.learn(tx, charge_terminal)

    def _bounded(self, deadline: Deadline) -> Deadline:
        """The caller's deadline, but never more than the settle budget from now."""
        return Deadline(min(deadline.at, time.monotonic() + self._settle_budget))

    def _answer(self, outcome: PostLinkOutcome, problem: ValidationError | None) -> PostLinkOutcome:
        self._telemetry.handled(outcome)
        if outcome.verdict is Verdict.MALFORMED:
            raise problem or ValidationError("the notification is invalid")
        if outcome.verdict is Verdict.FORGED:
            raise ForgedNotificationError("the notification was rejected", outcome.mismatched)
        return outcome


def _agrees(notification: Notification, charge: Charge, now: datetime) -> bool:
    """Whether the notification tells of the outcome the charge already holds: an approval of a
    charge authorized (its capture done or under way), captured, refunded or voided, or a
    failure of a declined one, naming the ePay transaction we know (if it names one). Anything
    else (a contradiction, a charge still unsettled) is asked of the status API."""
    named = notification.transaction_id
    if named and charge.epay.transaction_id and named != charge.epay.transaction_id:
        return False
    if notification.code == "ok":
        # A capture whose claim is held is recorded by its claimant; one whose claim lapsed is
        # left to the status API (it finishes the capture).
        capture_open = charge.capture_pending and not capture_in_flight(charge, now)
        return (
            charge.status in _AGREES_WITH_APPROVAL and not capture_open and not charge.void_pending
        )
    return notification.code == "error" and charge.status is ChargeStatus.DECLINED


def _with(outcome: PostLinkOutcome, **changes: Any) -> PostLinkOutcome:
    return replace(outcome, **changes)


def _forged(outcome: PostLinkOutcome, mismatched: tuple[str, ...]) -> PostLinkOutcome:
    return _with(
        outcome,
        verdict=Verdict.FORGED,
        mismatched=mismatched,
        detail="mismatched: " + ",".join(mismatched),
    )
