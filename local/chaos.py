"""The chaos scenario of tests/integration/test_reconciliation_chaos.py and bench/chaos_bench.py.

Charges across every outcome meet random faults (timeouts after commit, 5xx before and after,
broken bodies, dropped connections, token outages, functions dying before or after the auth,
error codes ePay does not document as final (454, 459, 1267) whether or not the transaction went
through, error answers with HTTP 200) with every postLink lost; then two reconcilers run at once
on a test clock until nothing is due. The simulator's ledger is the truth each charge is compared
with.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from local.epay_sim import (
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    TEST_TERMINAL2_CODE,
    TEST_TERMINAL2_ID,
    TEST_TERMINAL_ID,
    EpaySimulator,
)
from local.epay_sim import Terminal as SimTerminal
from payments.aws.charge_store import DynamoChargeStore
from payments.aws.invoice_space import DynamoInvoiceSpace
from payments.charges.invoices import InvoiceAllocator
from payments.charges.links import PublicLinks
from payments.charges.model import CaptureMode, Charge, ChargeStatus
from payments.charges.payment_gateway import AuthRequest, AuthResult, StatusResult, Token
from payments.charges.reconciler import Reconciler
from payments.charges.requests import ChargeRequest
from payments.charges.terminals import Purpose, Terminal
from payments.charges.use_cases import ChargeUseCases
from payments.epay.client import EpayClient, EpayCredentials, RetryPolicy, Timeouts
from payments.errors import GatewayError
from payments.shared.clock import from_iso
from payments.shared.deadline import Deadline

S = ChargeStatus
CARD = "c0000000-0000-4000-8000-0000000000{:02d}"
# What each final ledger status means for our charge (no ledger entry: never reached ePay).
LEDGER_TO_STATUS = {"CHARGE": S.CAPTURED, "REJECT": S.DECLINED, "3D": S.EXPIRED}
# (weight, (op, fault)); op "crash" is the function dying before or after the auth.
FAULTS: list[tuple[int, tuple[str, str] | None]] = [
    (43, None),
    (5, ("auth", "nonfinal_after_commit")),
    (2, ("auth", "nonfinal_before_commit")),
    (2, ("auth", "error_as_200")),
    (8, ("auth", "timeout_after_commit")),
    (7, ("auth", "500_after_commit")),
    (5, ("auth", "500_before_commit")),
    (6, ("auth", "broken_body")),
    (4, ("auth", "down")),
    (3, ("token", "500_before_commit")),
    (5, ("charge", "500_after_commit")),
    (4, ("charge", "down")),
    (3, ("crash", "before_auth")),
    (3, ("crash", "after_auth")),
]
CARDS = [1] * 50 + [2] * 10 + [3] * 10 + list(range(4, 11)) * 4
# The non-final codes of the `nonfinal_*` faults (459 is not final on ePay's KK page; 1267 is not
# in ePay's table at all).
NONFINAL_CODES = (454, 459, 1267)
MAX_ROUNDS = 400


class TestClock:
    """A clock the scenario moves by hand (thread-safe)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def set(self, moment: datetime) -> None:
        """Move the clock (never backwards)."""
        with self._lock:
            self.now = max(self.now, moment)


CREDENTIALS = EpayCredentials(
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    (
        Terminal(TEST_TERMINAL_ID, frozenset({Purpose.CIT, Purpose.SETUP})),
        Terminal(TEST_TERMINAL2_ID, frozenset({Purpose.MIT})),
    ),
)


class Crash(Exception):
    """The function died (timeout, out of memory) at this point."""


@dataclass
class CrashingGateway:
    """Delegates to the real client, but can 'die' just before or just after the auth."""

    inner: EpayClient
    crash: str | None = None

    def terminals(self) -> tuple[Terminal, ...]:
        return self.inner.terminals()

    def invoice_token(self, request: Any, deadline: Deadline) -> Token:
        return self.inner.invoice_token(request, deadline)

    def authorize(self, token: Token, request: AuthRequest, deadline: Deadline) -> AuthResult:
        if self.crash == "before_auth":
            raise Crash
        result = self.inner.authorize(token, request, deadline)
        if self.crash == "after_auth":
            raise Crash
        return result

    def status(self, invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        return self.inner.status(invoice_id, terminal_id, deadline)

    def capture(
        self, transaction_id: str, terminal_id: str, amount: Decimal | None, deadline: Deadline
    ) -> None:
        self.inner.capture(transaction_id, terminal_id, amount, deadline)

    def confirm_3ds(self, access_token: str, pa_res: str, md: str, deadline: Deadline) -> Any:
        return self.inner.confirm_3ds(access_token, pa_res, md, deadline)


class NullTelemetry:
    """The scenario counts outcomes itself."""

    def bind_charge(self, charge: Charge) -> None:
        return None

    def transitioned(self, charge: Charge, previous: ChargeStatus | None, source: str) -> None:
        return None

    def outcome(self, charge: Charge) -> None:
        return None

    def gateway_failure(self, charge: Charge, error: GatewayError) -> None:
        return None

    def space_used(self, terminal_id: str, share: float) -> None:
        return None

    def space_exhausted(self, terminal_id: str) -> None:
        return None


@dataclass
class ChaosReport:
    """What happened, for asserting (tests) or printing (bench)."""

    charges: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    after_create: Counter[str] = field(default_factory=Counter)
    final: Counter[str] = field(default_factory=Counter)
    mismatches: list[tuple[str, str | None, str]] = field(default_factory=list)
    terminals: Counter[str] = field(default_factory=Counter)  # charges per terminal
    # Charges answered with a non-final code whose transaction in fact went through at ePay.
    nonfinal_went_through: int = 0
    double_auths: int = 0
    rounds: int = 0
    create_seconds: float = 0.0
    reconcile_seconds: float = 0.0


def run_chaos(
    *, table: str, dynamodb: Any, simulator: EpaySimulator, charges: int, seed: int
) -> ChaosReport:
    """Create `charges` charges under random faults, reconcile until nothing is due, compare."""
    rng = random.Random(seed)
    clock = TestClock()
    simulator.postlink_drop = True
    # Two terminals, as merchants run them: 3-D Secure for customers, none for recurring charges.
    simulator.terminals = [SimTerminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE, three_ds=False)]
    client = EpayClient(
        oauth_url=simulator.oauth_url,
        api_url=simulator.api_url,
        credentials=lambda: CREDENTIALS,
        scope="payment",
        timeouts=Timeouts(connect=1.0, read=0.4),
        retry=RetryPolicy(max_retries=1, sleep=lambda _: None),
        clock=clock,
    )
    gateway = CrashingGateway(client)
    store = DynamoChargeStore(table, dynamodb, clock=clock)
    charges_ = ChargeUseCases.build(
        store=store,
        gateway=gateway,
        telemetry=NullTelemetry(),
        links=PublicLinks("http://127.0.0.1:3000"),
        allocator=InvoiceAllocator(
            DynamoInvoiceSpace(table, dynamodb),
            NullTelemetry(),
            window=timedelta(days=400),
            clock=clock,
        ),
        clock=clock,
    )
    service = charges_.service
    reconciler = Reconciler(
        store=store, settler=charges_.settler, transitions=charges_.transitions, clock=clock
    )
    report = ChaosReport(charges=charges)

    started = time.perf_counter()
    nonfinal: set[str] = set()  # invoices answered with a non-final code after the commit
    for n in range(charges):
        fault = rng.choices([f for _, f in FAULTS], weights=[w for w, _ in FAULTS])[0]
        gateway.crash = None
        if fault is not None:
            op, kind = fault
            report.faults[f"{op}:{kind}"] += 1
            if op == "crash":
                gateway.crash = kind
            else:
                simulator.nonfinal_code = rng.choice(NONFINAL_CODES)
                simulator.inject(op, kind, count=2 if op == "token" else 1, delay=1.0)
        request = ChargeRequest(
            amount=Decimal(rng.randint(100, 99999)) / 100,
            currency="KZT",
            card_id=CARD.format(rng.choice(CARDS)),
            account_id=f"customer-{n}",
            description=f"Chaos {n}",
            capture=CaptureMode.AUTO,
            recurrent=rng.random() < 0.5,
        )
        # A 503 to the merchant, or a function that died: the charge is stored either way.
        with contextlib.suppress(GatewayError, Crash):
            result = service.create_charge(request, f"chaos-{seed}-{n}", Deadline.after(20))
            if fault == ("auth", "nonfinal_after_commit"):
                nonfinal.add(result.charge.invoice_id)
        clock.set(clock.now + timedelta(seconds=1))
    report.create_seconds = time.perf_counter() - started
    created = _charges(dynamodb, table)
    report.after_create.update(status for _, _, status, _ in created)

    # The status API is flaky while the reconcilers work.
    simulator.inject("status", "in_progress", count=max(10, charges // 8))
    simulator.inject("status", "500_before_commit", count=max(5, charges // 15))
    started = time.perf_counter()
    while (due := _earliest_due(dynamodb, table)) is not None and report.rounds < MAX_ROUNDS:
        report.rounds += 1
        clock.set(due)
        runs = [threading.Thread(target=reconciler.run, args=(Deadline.after(60),)) for _ in "ab"]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
    report.reconcile_seconds = time.perf_counter() - started

    _compare(report, simulator, _charges(dynamodb, table), nonfinal)
    simulator.terminals = []
    simulator.postlink_drop = False
    return report


def _compare(
    report: ChaosReport,
    simulator: EpaySimulator,
    charges: list[tuple[str, str, str, str]],
    nonfinal: set[str],
) -> None:
    """Hold every charge against the simulator's ledger on its own terminal."""
    for _, invoice, status, terminal in charges:
        report.final[status] += 1
        report.terminals[terminal] += 1
        entry = simulator.ledger_entry(invoice, terminal)
        expected = LEDGER_TO_STATUS.get(entry.status_name, S.NEEDS_REVIEW) if entry else S.FAILED
        if status != expected.value:
            report.mismatches.append((invoice, entry.status_name if entry else None, status))
    report.nonfinal_went_through = sum(
        1 for i in nonfinal if any(e.status_name == "CHARGE" for e in _entries(simulator, i))
    )
    report.double_auths = sum(1 for e in simulator.ledger.values() if e.auth_count != 1)


def _entries(simulator: EpaySimulator, invoice: str) -> list[Any]:
    """The invoice's ledger entries on either terminal."""
    found = (simulator.ledger_entry(invoice, t) for t in (TEST_TERMINAL_ID, TEST_TERMINAL2_ID))
    return [e for e in found if e is not None]


def _scan(dynamodb: Any, table: str, **kwargs: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    page: dict[str, Any] = {"TableName": table, "ConsistentRead": True, **kwargs}
    while True:
        answer = dynamodb.scan(**page)
        items.extend(answer["Items"])
        if "LastEvaluatedKey" not in answer:
            return items
        page["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _charges(dynamodb: Any, table: str) -> list[tuple[str, str, str, str]]:
    """(id, invoice id, status, terminal) of every charge."""
    items = _scan(
        dynamodb,
        table,
        FilterExpression="sk = :c",
        ExpressionAttributeValues={":c": {"S": "CHARGE"}},
        ProjectionExpression="id, invoiceId, #s, terminalId",
        ExpressionAttributeNames={"#s": "status"},
    )
    return [
        (i["id"]["S"], i["invoiceId"]["S"], i["status"]["S"], i["terminalId"]["S"]) for i in items
    ]


def _earliest_due(dynamodb: Any, table: str) -> datetime | None:
    """The earliest nextCheckAt in the table (the scenario's view, not the reconciler's)."""
    items = _scan(
        dynamodb,
        table,
        FilterExpression="attribute_exists(nextCheckAt)",
        ProjectionExpression="nextCheckAt",
    )
    moments = [item["nextCheckAt"]["S"] for item in items]
    return from_iso(min(moments)) if moments else None
