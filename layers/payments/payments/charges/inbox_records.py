"""The postLink intake's records: inbox items and verdicts, what one delivery came to, and the
intake's ports (the inbox, its telemetry)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from payments.charges.model import ChargeStatus
from payments.charges.notifications import Route


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
    the exact body, so a byte-identical repeat is a duplicate."""

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


class PostLinkTelemetry(Protocol):
    """Logs and metrics of the intake; never sees the body or the secret."""

    def handled(self, outcome: PostLinkOutcome) -> None:
        """One delivery reached a verdict."""
        ...
