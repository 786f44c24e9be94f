"""The postLink intake's records: inbox items and verdicts, what one delivery came to, and the
intake's ports (the inbox, its telemetry)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from payments.charges.model import ChargeStatus
from payments.charges.notifications import NOTIFIED_INVOICE_PATTERN, Route
from payments.shared.fields import matches

# An inbox item's id, which locates the item: `<invoiceId>.<digest>` (the notification's invoice
# id, then the SHA-256 hex of its exact body; an invoice id never holds a "."), or the bare
# digest of an item stored before issue 16 (or of one without an invoice id, which the intake
# never stores: such a body is malformed).
INBOX_ID_RE = re.compile(
    rf"\A(?:(?P<invoice>{NOTIFIED_INVOICE_PATTERN})\.)?(?P<digest>[0-9a-f]{{64}})\Z"
)


def is_inbox_id(value: str) -> bool:
    """True for a string shaped like an inbox id; anything else is no notification (a 404)."""
    return matches(INBOX_ID_RE, value)


def inbox_id_for(invoice_id: str | None, digest: str) -> str:
    """The id of a notification kept now: `<invoiceId>.<digest>`, or the bare digest when it
    has no invoice id."""
    return f"{invoice_id}.{digest}" if invoice_id else digest


def split_inbox_id(inbox_id: str) -> tuple[str | None, str]:
    """The invoice id (None for a bare digest) and the body's digest an inbox id names;
    ValueError for anything not shaped like one."""
    found = INBOX_ID_RE.fullmatch(inbox_id) if isinstance(inbox_id, str) else None
    if found is None:
        raise ValueError("not an inbox id")
    return found.group("invoice"), found.group("digest")


class Verdict(StrEnum):
    """What the intake concluded about one notification (kept on its inbox item)."""

    RECEIVED = "received"  # stored; being handled (or its handler died before deciding)
    MALFORMED = "malformed"  # not a notification we can read: 400
    FORGED = "forged"  # failed verification: 403
    UNKNOWN_INVOICE = "unknown_invoice"  # no charge has this invoice id: 200, kept for review
    SETTLED = "settled"  # the status API answered; the charge was settled (changed or not)
    PENDING = "pending"  # the status API says not final yet (or does not know the invoice)
    DEFERRED = "deferred"  # the status API could not answer in time: left to the reconciler


FINAL_VERDICTS = frozenset(
    {Verdict.MALFORMED, Verdict.FORGED, Verdict.UNKNOWN_INVOICE, Verdict.SETTLED}
)


@dataclass(frozen=True)
class InboxRecord:
    """A well-formed notification as first stored: what verification and audit need of it (card
    id masked, no secret, no payer contacts), where it came from, when. `digest` is the SHA-256 of
    the exact body, so a byte-identical repeat is a duplicate (same invoice, same digest: the
    same inbox id, `inbox_id_for`)."""

    digest: str
    notification: Mapping[str, str] = field(repr=False)
    content_type: str | None
    route: Route
    source_ip: str | None
    received_at: datetime
    verdict: Verdict
    invoice_id: str | None = None
    secret_hash_digest: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class StoredVerdict:
    """What an earlier delivery of the same body left in the inbox."""

    verdict: Verdict
    deliveries: int
    received_at: datetime
    charge_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class InboxEntry:
    """One notification of an invoice as a charge's timeline shows it: when and where it came,
    what the intake (or a replay) concluded, how often it was delivered, and ePay's code and
    reasonCode. Never its secret (the inbox keeps none) or its other fields. `inbox_id` is what
    an operator's replay takes."""

    inbox_id: str
    received_at: datetime
    route: Route
    verdict: Verdict
    detail: str
    deliveries: int
    code: str | None = None
    reason_code: int | None = None


@dataclass(frozen=True)
class PostLinkOutcome:
    """What one delivery came to; telemetry reports it and the handler answers from it."""

    verdict: Verdict
    route: Route
    duplicate: bool
    invoice_id: str | None = None
    charge_id: str | None = None
    status: ChargeStatus | None = None
    mismatched: tuple[str, ...] = ()
    source_ip: str | None = None
    detail: str = ""


class Inbox(Protocol):
    """Where raw notifications are kept (with a TTL) before anything acts on them."""

    def keep(
        self, record: InboxRecord, *, charge_id: str | None, detail: str
    ) -> StoredVerdict | None:
        """Store a new record (with its verdict, charge and detail) under
        `inbox_id_for(record.invoice_id, record.digest)`, or count one more delivery of a stored
        one (one write either way); what an earlier delivery left, or None."""
        ...

    def record_verdict(
        self,
        inbox_id: str,
        verdict: Verdict,
        at: datetime,
        *,
        charge_id: str | None,
        detail: str,
        replayed_by: str | None = None,
    ) -> None:
        """Write what the intake (or an operator's replay, by `replayed_by`) concluded."""
        ...

    def stored(self, inbox_id: str) -> InboxRecord | None:
        """The record kept under `inbox_id` (its fields, the digest of its secret), or None."""
        ...

    def for_invoice(self, invoice_id: str) -> list[InboxEntry]:
        """The notifications received for an invoice, oldest first (a bounded number)."""
        ...


class PostLinkTelemetry(Protocol):
    """Logs and metrics of the intake; never sees the body or the secret."""

    def handled(self, outcome: PostLinkOutcome) -> None:
        """One delivery reached a verdict."""
        ...
