"""In-memory fakes that record calls (no MagicMock): a store, a gateway, telemetry, a transport."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from payments.charges.invoices import InvoiceAllocator, RingTicket, SuffixHolder
from payments.charges.model import CaptureMode, Charge, ChargeStatus, HistoryEntry
from payments.charges.payment_gateway import (
    AuthRequest,
    AuthResult,
    InvoiceTokenRequest,
    StatusResult,
    Token,
)
from payments.charges.terminals import Purpose, Terminal
from payments.epay.client import EpayClient, EpayCredentials, RetryPolicy, Timeouts
from payments.errors import DuplicateKeyError, GatewayError, StaleStateError
from payments.shared.deadline import Deadline
from payments.shared.idempotency import IdempotencyRecord
from payments.shared.payer import Payer


class FakeStore:
    """Keeps the store's guarantees: unique keys and conditional transitions, under a lock; with
    a `space`, also each terminal's suffix reservations (for `window`) as the create does."""

    def __init__(
        self, space: FakeInvoiceSpace | None = None, window: timedelta = timedelta(days=400)
    ) -> None:
        self.space, self.window = space, window
        self.charges: dict[str, Charge] = {}
        self.history: dict[str, list[HistoryEntry]] = {}
        self.keys: dict[str, IdempotencyRecord] = {}
        self.invoices: set[str] = set()
        # The payer facts kept with each invoice (DynamoChargeStore keeps them on the invoice).
        self.payers: dict[str, Payer] = {}
        self.counter = 0
        self.writes = 0
        self._lock = threading.Lock()

    def create(self, charge: Charge, entry: HistoryEntry) -> None:
        with self._lock:
            self.writes += 1
            if charge.idempotency_key in self.keys:
                raise DuplicateKeyError("taken", "idempotency")
            if charge.invoice_id in self.invoices:
                raise DuplicateKeyError("taken", "invoice")
            if self.space is not None:
                held = (charge.terminal_id, charge.invoice_id[-6:])
                holder = self.space.holders.get(held)
                if holder is not None and holder.expires_at > charge.created_at:
                    raise DuplicateKeyError("taken", "invoice_suffix")
                self.space.holders[held] = SuffixHolder(
                    charge.invoice_id, charge.created_at + self.window
                )
            self.charges[charge.id] = charge
            self.keys[charge.idempotency_key] = IdempotencyRecord(
                charge.idempotency_key, charge.id, charge.request_hash
            )
            self.invoices.add(charge.invoice_id)
            self.payers[charge.invoice_id] = charge.payer or Payer()
            self.history[charge.id] = [entry]

    def get(self, charge_id: str) -> Charge | None:
        return self.charges.get(charge_id)

    def get_idempotency(self, key: str, charge_id: str) -> IdempotencyRecord | None:
        return self.keys.get(key)

    def payer(self, charge: Charge) -> Payer:
        if charge.payer is not None:
            return charge.payer
        return self.payers.get(charge.invoice_id, Payer())

    def due_charge_ids(self, shard: int, now: datetime, limit: int) -> list[str]:
        due = [
            c
            for c in self.charges.values()
            if c.next_check_at is not None and c.next_check_at <= now
        ]
        return [c.id for c in sorted(due, key=lambda c: c.next_check_at or now)][:limit]

    def transition(self, current: Charge, updated: Charge, entries: list[HistoryEntry]) -> Charge:
        with self._lock:
            self.writes += 1
            stored = self.charges[current.id]
            if stored.status != current.status or stored.version != current.version:
                raise StaleStateError("changed")
            new = replace(updated, version=current.version + max(1, len(entries)))
            self.charges[current.id] = new
            self.history[current.id].extend(entries)
            return new


class FakeInvoiceSpace:
    """The allocator's rings in memory; `holders` are the suffix reservations, by (terminal,
    suffix), which a test (or a fake create) fills."""

    def __init__(self) -> None:
        self.rings: dict[tuple[str, int], dict[str, Any]] = {}
        self.holders: dict[tuple[str, str], SuffixHolder] = {}
        self.lanes: dict[str, int] = {}
        self.calls: list[str] = []

    def _ring(self, terminal_id: str, shard: int) -> dict[str, Any]:
        return self.rings.setdefault((terminal_id, shard), {"n": 0, "m": {}, "full": None})

    def lane(self, terminal_id: str) -> int:
        self.calls.append("lane")
        return self.lanes.setdefault(terminal_id, len(self.lanes))

    def take(self, terminal_id: str, shard: int, now: datetime, count: int = 1) -> RingTicket:
        self.calls.append("take")
        ring = self._ring(terminal_id, shard)
        if ring["full"] is not None and ring["full"] > now:
            return RingTicket(0, {}, full_until=ring["full"])
        ring["n"] += count
        return RingTicket(ring["n"], dict(ring["m"]), count=count)

    def mark(self, terminal_id: str, shard: int, mark: int, now: datetime) -> None:
        self.calls.append("mark")
        self._ring(terminal_id, shard)["m"][mark] = int(now.timestamp())

    def mark_full(
        self, terminal_id: str, shard: int, n: int, until: datetime, last: int | None = None
    ) -> None:
        self.calls.append("mark_full")
        ring = self._ring(terminal_id, shard)
        ring["full"] = until
        if ring["n"] == (n if last is None else last):
            ring["n"] = n - 1

    def suffix_holder(self, terminal_id: str, suffix: str) -> SuffixHolder | None:
        self.calls.append("suffix_holder")
        return self.holders.get((terminal_id, suffix))


@dataclass
class RecordingInvoiceTelemetry:
    """Records the shares reported and the terminals found exhausted."""

    shares: list[tuple[str, float]] = field(default_factory=list)
    exhausted: list[str] = field(default_factory=list)

    def space_used(self, terminal_id: str, share: float) -> None:
        self.shares.append((terminal_id, share))

    def space_exhausted(self, terminal_id: str) -> None:
        self.exhausted.append(terminal_id)


def fake_allocator(space: FakeInvoiceSpace | None = None) -> InvoiceAllocator:
    """An allocator on in-memory rings with the default 400-day window."""
    return InvoiceAllocator(
        space or FakeInvoiceSpace(), RecordingInvoiceTelemetry(), window=timedelta(days=400)
    )


@dataclass
class FakeGateway:
    """Answers by script; records every call with the store's view at that moment."""

    auth_outcome: AuthResult | GatewayError | None = None
    token_error: GatewayError | None = None
    capture_error: GatewayError | None = None
    on_authorize: Callable[[AuthRequest], None] | None = None
    status_answers: list[StatusResult | GatewayError] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    terminal_list: tuple[Terminal, ...] = (Terminal("terminal-1", frozenset(Purpose)),)
    terminals_used: list[str] = field(default_factory=list)  # of status and capture calls

    def terminals(self) -> tuple[Terminal, ...]:
        return self.terminal_list

    def invoice_token(self, request: InvoiceTokenRequest, deadline: Deadline) -> Token:
        from datetime import UTC, datetime, timedelta

        self.calls.append(("token", request))
        if self.token_error is not None:
            raise self.token_error
        return Token("tok-secret-value", datetime.now(UTC) + timedelta(seconds=1200))

    def authorize(self, token: Token, request: AuthRequest, deadline: Deadline) -> AuthResult:
        self.calls.append(("auth", request))
        if self.on_authorize is not None:
            self.on_authorize(request)
        outcome = self.auth_outcome
        if isinstance(outcome, GatewayError):
            raise outcome
        assert outcome is not None
        return outcome

    def status(self, invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        self.calls.append(("status", invoice_id))
        self.terminals_used.append(terminal_id)
        answer = self.status_answers.pop(0)
        if isinstance(answer, GatewayError):
            raise answer
        return answer

    def capture(
        self, transaction_id: str, terminal_id: str, amount: Decimal | None, deadline: Deadline
    ) -> None:
        self.calls.append(("capture", (transaction_id, amount)))
        self.terminals_used.append(terminal_id)
        if self.capture_error is not None:
            raise self.capture_error

    def ops(self) -> list[str]:
        return [name for name, _ in self.calls]


@dataclass
class RecordingTelemetry:
    """Records transitions and gateway failures."""

    transitions: list[tuple[str | None, str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)

    def bind_charge(self, charge: Charge) -> None:
        return None

    def transitioned(self, charge: Charge, previous: ChargeStatus | None, source: str) -> None:
        self.transitions.append((previous.value if previous else None, charge.status.value, source))

    def outcome(self, charge: Charge) -> None:
        self.outcomes.append(charge.status.value)

    def gateway_failure(self, charge: Charge, error: GatewayError) -> None:
        self.failures.append(type(error).__name__)


@dataclass
class FakeResponse:
    status: int
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordedRequest:
    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]
    timeout: Any


class FakeTransport:
    """Stands in for urllib3.PoolManager: answers scripted responses or raises, records requests."""

    def __init__(self, answers: list[FakeResponse | Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[RecordedRequest] = []

    def request(self, method: str, url: str, **kwargs: Any) -> FakeResponse:
        self.requests.append(
            RecordedRequest(method, url, kwargs.get("body"), kwargs["headers"], kwargs["timeout"])
        )
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def epay_client(transport: FakeTransport, retry: RetryPolicy, **extra: Any) -> EpayClient:
    """An ePay client on `transport` for a single-terminal merchant (client id "test", terminal
    "terminal-uuid"); `extra` passes on_call, timer and the like."""
    return EpayClient(
        oauth_url="https://oauth.test/oauth2/token",
        api_url="https://api.test/",
        credentials=lambda: EpayCredentials.single("test", "client-secret-value", "terminal-uuid"),
        scope="webapi payment",
        timeouts=Timeouts(connect=2.0, read=7.0),
        retry=retry,
        http=transport,  # type: ignore[arg-type]
        **extra,
    )


TEST_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def make_charge(**changes: Any) -> Charge:
    """A stored charge with plausible values; pass the fields a test cares about."""
    fields: dict[str, Any] = {
        "id": "ch_1",
        "invoice_id": "000000042",
        "status": ChargeStatus.PROCESSING,
        "amount": Decimal("1500.50"),
        "currency": "KZT",
        "account_id": "customer-42",
        "card_id": "c0000000-0000-4000-8000-000000000001",
        "description": "Order 42",
        "capture": CaptureMode.AUTO,
        "recurrent": True,
        "language": "rus",
        "idempotency_key": "k",
        "request_hash": "h",
        "secret_hash_digest": "d",
        "created_at": TEST_NOW,
        "updated_at": TEST_NOW,
    }
    fields.update(changes)
    return Charge(**fields)
