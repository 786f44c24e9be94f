"""Chaos: ~300 charges across every outcome with random faults, crashes and lost postLinks, then
the reconciler (two at once, on a test clock) until nothing is due. ePay's ledger is the truth."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3

from local.epay_sim import TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_TERMINAL_ID
from payments.epay import EpayClient, EpayCredentials, RetryPolicy, Timeouts
from payments.errors import GatewayError
from payments.gateway import AuthRequest, AuthResult, Deadline, Token
from payments.models import CaptureMode, ChargeRequest, ChargeStatus
from payments.reconcile import Reconciler
from payments.service import ChargeService
from payments.store import ChargeStore
from tests.fakes import RecordingTelemetry
from tests.integration.conftest import Stack

SEED = 20261128
CHARGES = 300
CARD = "c0000000-0000-4000-8000-0000000000{:02d}"
S = ChargeStatus
LEDGER_TO_STATUS = {
    "CHARGE": S.CAPTURED,
    "REJECT": S.DECLINED,
    "3D": S.EXPIRED,
    "CANCEL": S.CANCELLED,
}
# (weight, (op, fault) or a crash marker)
FAULTS: list[tuple[int, tuple[str, str] | None]] = [
    (52, None),
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


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self.now = moment


class Crash(Exception):
    """The function died (timeout, OOM) at this point."""


@dataclass
class CrashingGateway:
    """Delegates to the real client, but can 'die' just before or just after the auth."""

    inner: EpayClient
    crash: str | None = None

    def terminal_id(self) -> str:
        return self.inner.terminal_id()

    def invoice_token(self, request: Any, deadline: Deadline) -> Token:
        return self.inner.invoice_token(request, deadline)

    def authorize(self, token: Token, request: AuthRequest, deadline: Deadline) -> AuthResult:
        if self.crash == "before_auth":
            raise Crash
        result = self.inner.authorize(token, request, deadline)
        if self.crash == "after_auth":
            raise Crash
        return result

    def status(self, invoice_id: str, deadline: Deadline) -> Any:
        return self.inner.status(invoice_id, deadline)

    def capture(self, transaction_id: str, amount: Decimal | None, deadline: Deadline) -> None:
        self.inner.capture(transaction_id, amount, deadline)


def test_every_charge_ends_as_the_ledger_says(stack: Stack) -> None:
    # Given the real client, store and use cases on a test clock, and lost postLinks
    rng = random.Random(SEED)
    clock = Clock()
    sim = stack.simulator
    sim.postlink_drop = True
    client = EpayClient(
        oauth_url=sim.oauth_url,
        api_url=sim.api_url,
        credentials=lambda: EpayCredentials(TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_TERMINAL_ID),
        scope="payment",
        timeouts=Timeouts(connect=1.0, read=0.4),
        retry=RetryPolicy(max_retries=1, sleep=lambda _: None),
        clock=clock,
    )
    gateway = CrashingGateway(client)
    store = ChargeStore(stack.table, boto3.client("dynamodb"), clock=clock)
    service = ChargeService(
        store=store,
        gateway=gateway,
        telemetry=RecordingTelemetry(),
        public_base_url="http://127.0.0.1:3000",
        clock=clock,
    )
    reconciler = Reconciler(charges=service, store=store, clock=clock)
    cards = [1] * 50 + [2] * 10 + [3] * 10 + list(range(4, 11)) * 4

    # When ~300 charges meet random faults and crashes
    created: dict[str, str] = {}
    faults = Counter[str]()
    for n in range(CHARGES):
        card = CARD.format(rng.choice(cards))
        fault = rng.choices([f for _, f in FAULTS], weights=[w for w, _ in FAULTS])[0]
        gateway.crash = None
        if fault is not None:
            op, kind = fault
            faults[f"{op}:{kind}"] += 1
            if op == "crash":
                gateway.crash = kind
            else:
                sim.inject(op, kind, count=2 if op == "token" else 1, delay=1.0)
        request = ChargeRequest(
            amount=Decimal(rng.randint(100, 99999)) / 100,
            currency="KZT",
            card_id=card,
            account_id=f"customer-{n}",
            description=f"Chaos {n}",
            capture=CaptureMode.AUTO,
        )
        try:
            charge = service.create_charge(request, f"chaos-{n}", Deadline.after(20)).charge
            created[charge.id] = charge.invoice_id
        except (GatewayError, Crash):
            pass
        clock.set(clock.now + timedelta(seconds=1))
    for item in stack.charge_items():
        created[item["id"]["S"]] = item["invoiceId"]["S"]
    assert len(created) == CHARGES

    # And the status API is flaky while the reconcilers work
    sim.inject("status", "in_progress", count=40)
    sim.inject("status", "500_before_commit", count=20)

    # When two reconcilers run at once each time a check falls due, until nothing is due
    rounds = 0
    while (due := _earliest_due(stack)) is not None and rounds < 400:
        rounds += 1
        clock.set(max(clock.now, due))
        runs = [
            threading.Thread(target=reconciler.run, args=(Deadline.after(60),)) for _ in range(2)
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join()

    # Then every charge is final (or waiting for a person), as ePay's ledger says
    final: Counter[str] = Counter()
    mismatches = []
    for charge_id, invoice in created.items():
        charge = store.get(charge_id)
        assert charge is not None
        final[charge.status.value] += 1
        entry = sim.ledger.get(invoice)
        expected = LEDGER_TO_STATUS.get(entry.status_name, S.NEEDS_REVIEW) if entry else S.FAILED
        if charge.status is not expected:
            mismatches.append((invoice, entry.status_name if entry else None, charge.status.value))
    print(f"\nchaos: faults {dict(faults)}; final {dict(final)}; reconcile rounds {rounds}")
    assert rounds < 400
    assert mismatches == []
    # And no invoice was ever authorised twice
    assert all(entry.auth_count == 1 for entry in sim.ledger.values())
    assert final[S.NEEDS_REVIEW.value] == 0
    assert all(final[s.value] for s in (S.CAPTURED, S.DECLINED, S.EXPIRED, S.FAILED))


def _earliest_due(stack: Stack) -> datetime | None:
    """The earliest nextCheckAt in the table (one Scan; the test's view, not the reconciler's)."""
    answer = stack.dynamodb.scan(
        TableName=stack.table,
        FilterExpression="attribute_exists(nextCheckAt)",
        ProjectionExpression="nextCheckAt",
        ConsistentRead=True,
    )
    moments = [item["nextCheckAt"]["S"] for item in answer["Items"]]
    return datetime.fromisoformat(min(moments).replace("Z", "+00:00")) if moments else None
