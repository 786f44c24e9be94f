"""What the use cases need from ePay: request and result types, and the Gateway port."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from payments.charges.inbox_records import InboxRecord, PostLinkOutcome, StoredVerdict, Verdict
from payments.charges.model import (
    Charge,
    ChargeStatus,
    HistoryEntry,
)
from payments.charges.settlement import Settlement
from payments.errors import (
    GatewayError,
)
from payments.shared.deadline import Deadline
from payments.shared.idempotency import IdempotencyRecord


@dataclass(frozen=True)
class Token:
    """An ePay access token; the value never appears in repr()."""

    access_token: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class InvoiceTokenRequest:
    """The invoice fields a per-operation token is bound to (epay-api.md section 1)."""

    invoice_id: str
    amount: Decimal
    currency: str
    post_link: str
    failure_post_link: str
    secret_hash: str = field(repr=False)


@dataclass(frozen=True)
class AuthRequest:
    """The body of POST /payments/cards/auth (epay-api.md section 2)."""

    invoice_id: str
    amount: Decimal
    currency: str
    card_id: str = field(repr=False)
    account_id: str
    description: str
    language: str
    recurrent: bool
    post_link: str
    failure_post_link: str
    invoice_id_alt: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    back_link: str | None = None
    failure_back_link: str | None = None


@dataclass(frozen=True)
class Secure3D:
    """ePay's demand for 3-D Secure: where to send the customer and what to post there."""

    pa_req: str = field(repr=False)
    md: str = field(repr=False)
    action: str
    term_url: str | None = None


@dataclass(frozen=True)
class AuthResult:
    """A 200 answer of the auth endpoint: AUTH (held), CHARGE (taken) or 3D."""

    status: str
    transaction_id: str | None
    invoice_id: str | None
    reference: str | None = None
    approval_code: str | None = None
    card_mask: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    secure3d: Secure3D | None = None


@dataclass(frozen=True)
class ConfirmResult:
    """What ePay's 3-D Secure confirm said: a `reference` (RRN) on success, an `error_code` on
    failure, neither when the answer was unclear. Informational: the status API decides."""

    reference: str | None = None
    error_code: str | None = None

    @property
    def approved(self) -> bool | None:
        """True, False, or None when the answer carried neither field."""
        if self.error_code is not None:
            return False
        return True if self.reference is not None else None


@dataclass(frozen=True)
class TransactionStatus:
    """The transaction part of a status answer (epay-api.md section 4)."""

    transaction_id: str | None
    invoice_id: str | None
    status_name: str
    amount: Decimal | None
    currency: str | None
    reference: str | None
    approval_code: str | None
    card_mask: str | None
    reason: str | None
    reason_code: int | None


@dataclass(frozen=True)
class StatusResult:
    """An answer of the status API; `transaction` is set when resultCode is 100."""

    result_code: str
    message: str
    transaction: TransactionStatus | None


class Gateway(Protocol):
    """The ePay operations the use cases call."""

    def invoice_token(self, request: InvoiceTokenRequest, deadline: Deadline) -> Token:
        """A token bound to one invoice, amount and currency."""
        ...

    def authorize(self, token: Token, request: AuthRequest, deadline: Deadline) -> AuthResult:
        """Charge a saved card; never retried."""
        ...

    def status(self, invoice_id: str, deadline: Deadline) -> StatusResult:
        """Ask ePay what happened to an invoice."""
        ...

    def capture(self, transaction_id: str, amount: Decimal | None, deadline: Deadline) -> None:
        """Charge (capture) a held AUTH, wholly or partly."""
        ...

    def confirm_3ds(
        self, access_token: str, pa_res: str, md: str, deadline: Deadline
    ) -> ConfirmResult:
        """Forward the ACS's PaRes/MD to ePay's confirm endpoint with the charge's token; never
        retried, redirects never followed."""
        ...

    def terminal_id(self) -> str:
        """The merchant's terminal id, from the credentials."""
        ...


class Store(Protocol):
    """What the use cases need from the charge store."""

    def allocate_invoice_number(self) -> int:
        """Next invoice counter value."""
        ...

    def create(self, charge: Charge, entry: HistoryEntry) -> None:
        """Write a new charge with its guards."""
        ...

    def get(self, charge_id: str) -> Charge | None:
        """Read a charge."""
        ...

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """Read an idempotency record."""
        ...

    def transition(self, current: Charge, updated: Charge, entries: list[HistoryEntry]) -> Charge:
        """Conditionally replace a charge and append history."""
        ...


class Telemetry(Protocol):
    """Logs and metrics of business outcomes, kept out of the use cases' way."""

    def bind_charge(self, charge: Charge) -> None:
        """Attach the charge id to every later log line of this invocation."""
        ...

    def transitioned(self, charge: Charge, previous: ChargeStatus | None, source: str) -> None:
        """A charge reached a new status."""
        ...

    def outcome(self, charge: Charge) -> None:
        """A write settled the charge in its current status."""
        ...

    def gateway_failure(self, charge: Charge, error: GatewayError) -> None:
        """ePay failed in a way an operator may need to know about."""
        ...


class ReconcileStore(Protocol):
    """What the reconciler needs from the charge store."""

    def get(self, charge_id: str) -> Charge | None:
        """Read a charge (strongly consistent)."""
        ...

    def due_charge_ids(self, shard: int, now: datetime, limit: int) -> list[str]:
        """Ids due for a check in one shard."""
        ...

    def reschedule(self, current: Charge, next_check_at: datetime | None, attempts: int) -> Charge:
        """Move the next check, conditionally on the version read."""
        ...


class ChargeReader(Protocol):
    """The part of the charge store this module needs."""

    def get(self, charge_id: str) -> Charge | None:
        """Read a charge (strongly consistent)."""
        ...

    def transition(self, current: Charge, updated: Charge, entries: list[HistoryEntry]) -> Charge:
        """Conditionally replace a charge (status and version as read)."""
        ...


class Confirmer(Protocol):
    """The part of the Gateway this module needs."""

    def confirm_3ds(
        self, access_token: str, pa_res: str, md: str, deadline: Deadline
    ) -> ConfirmResult:
        """Forward PaRes/MD to ePay's confirm endpoint once."""
        ...


class Inbox(Protocol):
    """Where raw notifications are kept (with a TTL) before anything acts on them."""

    def put_new(self, record: InboxRecord) -> bool:
        """Store a record; False when a record with the same digest already exists."""
        ...

    def seen_again(self, digest: str, at: datetime) -> StoredVerdict:
        """Count one more delivery of a stored body and return what is stored for it."""
        ...

    def record_verdict(
        self, digest: str, verdict: Verdict, at: datetime, *, charge_id: str | None, detail: str
    ) -> None:
        """Write what the intake concluded."""
        ...


class ChargeLookup(Protocol):
    """Finding the charge a notification is about."""

    def get_by_invoice(self, invoice_id: str) -> Charge | None:
        """The charge holding this invoice id, or None."""
        ...


class Settler(Protocol):
    """The one way any signal settles a charge (ChargeService.settle)."""

    def settle(self, charge_id: str, source: str, deadline: Deadline) -> Settlement:
        """Ask the status API and apply its answer through the state machine."""
        ...


class PostLinkTelemetry(Protocol):
    """Logs and metrics of the intake; never sees the body or the secret."""

    def handled(self, outcome: PostLinkOutcome) -> None:
        """One delivery reached a verdict."""
        ...
