"""The chaos scenario of tests/integration/test_reconciliation_chaos.py and bench/chaos_bench.py.

Charges across every outcome meet random faults (timeouts after commit, 5xx before and after,
broken bodies, dropped connections, token outages, functions dying before or after the auth,
error codes ePay does not document as final (454, 459, 1267) whether or not the transaction went
through, error answers with HTTP 200) with every postLink lost. Some are held (manual capture) and
some of those voided, some cancels meeting faults of their own. Captured charges are refunded,
partly and wholly, one refund after another or several at once, refunds meeting faults before and
after ePay commits them. Then the charges' and the refunds' reconcilers run, two of each at once,
on a test clock until nothing is due; a second wave of voids and refunds (on charges the
reconcilers settled) follows and is reconciled the same way. Last, card setups (verifications
and first payments, approved or declined on the simulator's payment page, some through 3-D
Secure) have a share of their postLinks lost or sent several times, some first payments' captures
meeting faults; the setups' and the charges' reconcilers settle the rest once the clock passes the
setups' first check. The simulator's ledger is the truth each charge, refund, card setup, saved
card and first payment is compared with.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
from local.epay_sim.payform_client import PayformError, submit_payment
from payments.aws.card_store import (
    DynamoCardStore,
    DynamoSetupStore,
    card_from_item,
    setup_from_item,
)
from payments.aws.charge_store import DynamoChargeStore
from payments.aws.dynamo import from_attributes
from payments.aws.inbox import DynamoInbox
from payments.aws.invoice_space import DynamoInvoiceSpace
from payments.aws.refund_store import DynamoRefundStore
from payments.cards.model import Card, CardSetup, CardStatus, SetupMode, SetupStatus
from payments.cards.reconciler import SetupReconciler
from payments.cards.requests import SetupRequest
from payments.cards.settlement import SetupSettler
from payments.cards.setups import CardSetups, WidgetPage
from payments.charges.inbox_records import PostLinkOutcome
from payments.charges.invoices import InvoiceAllocator
from payments.charges.links import FAILURE_POSTLINK_PATH, PublicLinks
from payments.charges.model import CaptureMode, Charge, ChargeStatus
from payments.charges.notifications import Delivery, Route
from payments.charges.page_tokens import PageTokens, derive_key
from payments.charges.payment_gateway import AuthRequest, AuthResult, StatusResult, Token
from payments.charges.postlink import PostLinkService
from payments.charges.reconciler import Reconciler
from payments.charges.requests import ChargeRequest
from payments.charges.terminals import Purpose, Terminal, TerminalCodes
from payments.charges.use_cases import ChargeUseCases
from payments.epay.client import EpayClient, EpayCredentials, RetryPolicy, Timeouts
from payments.errors import (
    ConflictError,
    ForgedNotificationError,
    GatewayError,
    GatewayUnknownOutcomeError,
    PayloadTooLargeError,
    PaymentsError,
    ValidationError,
)
from payments.refunds.model import RefundStatus, minimum_refund
from payments.refunds.reconciler import RefundReconciler
from payments.refunds.requests import RefundRequest
from payments.refunds.service import RefundResult, RefundService
from payments.shared.clock import from_iso
from payments.shared.deadline import Deadline

S = ChargeStatus
R = RefundStatus
CARD = "c0000000-0000-4000-8000-0000000000{:02d}"
# What each final ledger status means for our charge (no ledger entry: never reached ePay).
# CHARGE and REFUND depend on the amounts returned (see `_expected`).
LEDGER_TO_STATUS = {
    "REJECT": S.DECLINED,
    "3D": S.EXPIRED,
    "AUTH": S.AUTHORIZED,
    "CANCEL": S.CANCELLED,
}
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
# Faults of one refund request (the answer lost after ePay returned the money, or before it got
# the request) and of one cancel. The delay only has to outlast the client's read timeout.
REFUND_FAULTS: list[tuple[int, str | None]] = [
    (52, None),
    (9, "timeout_after_commit"),
    (8, "500_after_commit"),
    (7, "broken_body"),
    (5, "nonfinal_after_commit"),
    (8, "500_before_commit"),
    (7, "down"),
    (4, "nonfinal_before_commit"),
]
CANCEL_FAULTS: list[tuple[int, str | None]] = [
    (50, None),
    (15, "timeout_after_commit"),
    (12, "500_after_commit"),
    (12, "500_before_commit"),
    (11, "down"),
]
FAULT_DELAY = 1.0
CARDS = [1] * 50 + [2] * 10 + [3] * 10 + list(range(4, 11)) * 4
# The non-final codes of the `nonfinal_*` faults (459 is not final on ePay's KK page; 1267 is not
# in ePay's table at all).
NONFINAL_CODES = (454, 459, 1267)
MAX_ROUNDS = 400
MANUAL_SHARE = 0.15  # charges held for a manual capture (voided, or left held)
VOID_SHARE = 0.7  # held charges cancelled (and, with `stop_3ds`, charges waiting for 3DS)
REFUND_SHARE = 0.45  # refundable charges refunded in each wave
REFUND_WORKERS = 4  # charges refunded at once (each charge's plan runs in order)
# How a refunded charge is refunded: one request, several in turn, several at once, or one sent
# again with its key (a replay must answer the same refund without calling ePay).
PLANS: list[tuple[int, str]] = [(40, "single"), (25, "series"), (20, "race"), (15, "replay")]
REFUNDABLE = frozenset({S.CAPTURED.value, S.PARTIALLY_REFUNDED.value})
WAVES = 2
CENT = Decimal("0.01")
# Card setups (after the charges), verifications and first payments in turn: of each mode's,
# the second of every three is declined on ePay's page (so a few setups cover every pair), and
# a share of the first payments go through 3-D Secure (approved or failed at the issuer). What
# becomes of each page's postLink is drawn.
SETUP_DECLINED = 1  # the setup of each mode whose index % 3 is this one is declined
SETUP_3DS_SHARE = 0.4
SETUP_POSTLINKS: list[tuple[int, str]] = [(55, "lost"), (25, "delivered"), (20, "duplicated")]
SETUP_DUPLICATES = 2  # extra copies of a duplicated postLink
# Faults met by the capture of a first payment (the next capture ePay is asked for).
SETUP_CAPTURE_FAULTS: list[tuple[int, str | None]] = [
    (60, None),
    (15, "500_after_commit"),
    (15, "500_before_commit"),
    (10, "down"),
]
SETUP_BACK = "https://shop.example/cards/saved"
SETUP_FAILED_BACK = "https://shop.example/cards/failed"
# What a final ledger status means for a card setup (no entry: the page was never paid on).
SETUP_LEDGER: dict[str, SetupStatus] = {
    "VERIFIED": SetupStatus.SUCCEEDED,
    "AUTH": SetupStatus.SUCCEEDED,
    "CHARGE": SetupStatus.SUCCEEDED,
    "REJECT": SetupStatus.FAILED,
}


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

    def cancel(self, transaction_id: str, terminal_id: str, deadline: Deadline) -> None:
        self.inner.cancel(transaction_id, terminal_id, deadline)

    def refund(
        self,
        transaction_id: str,
        terminal_id: str,
        amount: Decimal,
        external_id: str,
        deadline: Deadline,
    ) -> None:
        self.inner.refund(transaction_id, terminal_id, amount, external_id, deadline)

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


class NullSetupTelemetry:
    """The scenario counts setups itself."""

    def setup_finished(self, setup: CardSetup) -> None:
        return None


class NullPostLinkTelemetry:
    """The receiver counts the intake's verdicts itself."""

    def handled(self, outcome: PostLinkOutcome) -> None:
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
    # Voids: what each cancel answered ("CANCELLED", "unknown" for a lost answer, "refused",
    # "error"), and how the voided charges ended.
    voids: Counter[str] = field(default_factory=Counter)
    voids_final: Counter[str] = field(default_factory=Counter)
    # Refunds: plans by kind, what each request answered (a refund's status, "refused" before
    # ePay heard of it, "replayed"), how every refund ended, and the comparison with the ledger.
    refund_plans: Counter[str] = field(default_factory=Counter)
    refunds_after_call: Counter[str] = field(default_factory=Counter)
    refunds_final: Counter[str] = field(default_factory=Counter)
    # (refund id, why) of every NEEDS_REVIEW refund, and whether ePay returned it
    refunds_in_review: list[tuple[str, str]] = field(default_factory=list)
    # (what, problem): refunds, refunded amounts, reservations and voids left pending that
    # disagree with the ledger
    refund_mismatches: list[tuple[str, str]] = field(default_factory=list)
    refunded_ours: Decimal = Decimal(0)  # sum of our charges' refundedAmount
    refunded_ledger: Decimal = Decimal(0)  # sum of the ledger's refunded_amount of our charges
    # Returned at ePay by refunds of ours that wait for a person (not in our refundedAmount).
    refunded_in_review: Decimal = Decimal(0)
    refunds_sent_twice: int = 0  # refund ids ePay was asked for more than once
    ledger_refunds_twice: int = 0  # externalIDs the ledger holds more than once
    refund_seconds: float = 0.0
    # Exceptions that ended a reconciler's run early (its due items wait for the next run).
    reconcile_errors: Counter[str] = field(default_factory=Counter)
    # Card setups: how many, "mode:outcome" on ePay's page, what became of their postLinks, how
    # the intake answered each delivery, their statuses before and after the reconcilers, the
    # faults their first payments' captures met, what the setup reconciler's runs did (checked,
    # settled, expired, errors by type), the cards saved for them and their first payments'
    # final statuses. Their problems are in `mismatches` (ours starting with "setup").
    setups: int = 0
    setup_plans: Counter[str] = field(default_factory=Counter)
    setup_postlinks: Counter[str] = field(default_factory=Counter)
    setup_postlink_answers: Counter[str] = field(default_factory=Counter)
    setups_before_reconcile: Counter[str] = field(default_factory=Counter)
    setups_final: Counter[str] = field(default_factory=Counter)
    setup_faults: Counter[str] = field(default_factory=Counter)
    setup_reconciler: Counter[str] = field(default_factory=Counter)
    setup_cards: int = 0  # cards saved under the setups' accounts
    setup_charges_final: Counter[str] = field(default_factory=Counter)
    setup_rounds: int = 0
    setup_seconds: float = 0.0

    @property
    def refunds_needs_review(self) -> int:
        """Refunds ePay's status could not account for: a person decides."""
        return self.refunds_final[R.NEEDS_REVIEW.value]

    @property
    def setup_mismatches(self) -> list[tuple[str, str | None, str]]:
        """The mismatches of card setups, their cards and their first payments."""
        return [m for m in self.mismatches if m[2].startswith("setup")]


@dataclass(frozen=True)
class ChargeRow:
    """A charge as the scenario reads it back from the table."""

    id: str
    invoice: str
    status: str
    terminal: str
    capture: str
    created_at: str
    refunded: Decimal
    reserved: Decimal
    void_pending: bool


@dataclass(frozen=True)
class RefundRow:
    """A refund as the scenario reads it back from the table."""

    id: str
    charge_id: str
    amount: Decimal
    status: str
    error: str = ""


@dataclass
class SetupParts:
    """Card setups wired as bootstrap wires them: their page, settler, stores, the postLink
    intake (charges and setups) and the setup reconciler."""

    setups: CardSetups
    settler: SetupSettler
    store: DynamoSetupStore
    cards: DynamoCardStore
    postlinks: PostLinkService
    reconciler: SetupReconciler


class PostLinkReceiver:
    """A loopback HTTP server where the simulator's postLinks land: each delivery goes to the
    postLink intake (as functions/postlink hands it over) and is answered 200, or the status
    the function would answer for its error; the answers are counted."""

    def __init__(self) -> None:
        self.intake: PostLinkService | None = None
        self.answers: Counter[str] = Counter()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver.receive(self.path, body, self.headers.get("Content-Type"))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL the postLinks go under."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> PostLinkReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def receive(self, path: str, body: bytes, content_type: str | None) -> int:
        """One delivery through the intake; the HTTP status it is answered."""
        failure = urllib.parse.urlsplit(path).path == FAILURE_POSTLINK_PATH
        delivery = Delivery(body, content_type, Route.FAILURE if failure else Route.SUCCESS)
        status, what = 500, "no intake"
        try:
            if self.intake is not None:
                outcome = self.intake.receive(delivery, Deadline.after(15))
                again = " (duplicate)" if outcome.duplicate else ""
                status, what = 200, f"{outcome.verdict.value}{again}"
        except PayloadTooLargeError:
            status, what = 413, "too large"
        except ValidationError:
            status, what = 400, "malformed"
        except ForgedNotificationError:
            status, what = 403, "forged"
        except Exception as exc:  # answered 500 (ePay's postLink is not retried): counted
            status, what = 500, type(exc).__name__
        with self._lock:
            self.answers[f"{status} {what}"] += 1
        return status


@dataclass
class Rig:
    """The scenario's wiring: the stores, use cases and reconcilers on one test clock."""

    table: str
    dynamodb: Any
    simulator: EpaySimulator
    clock: TestClock
    gateway: CrashingGateway
    store: DynamoChargeStore
    charges: ChargeUseCases
    refunds: RefundService
    reconcile: list[Callable[[Deadline], object]]
    report: ChaosReport
    seed: int
    refund_store: DynamoRefundStore
    cards: SetupParts
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop_3ds: bool = False
    voided: set[str] = field(default_factory=set)  # charges a cancel was sent for
    void_considered: set[str] = field(default_factory=set)
    nonfinal: set[str] = field(default_factory=set)  # invoices answered with a non-final code
    setup_ids: list[str] = field(default_factory=list)  # card setups, in order
    keys: int = 0

    def key(self, kind: str) -> str:
        """A fresh idempotency key."""
        with self.lock:
            self.keys += 1
            return f"chaos-{self.seed}-{kind}-{self.keys}"

    def count(self, counter: Counter[str], name: str) -> None:
        """Count from any thread."""
        with self.lock:
            counter[name] += 1


def run_chaos(
    *,
    table: str,
    dynamodb: Any,
    simulator: EpaySimulator,
    charges: int,
    seed: int,
    stop_3ds: bool = False,
    setups: int = 6,
) -> ChaosReport:
    """Create `charges` charges under random faults, void and refund some, reconcile until
    nothing is due (twice: a second wave of voids and refunds follows the first
    reconciliation), then make `setups` card setups whose postLinks are mostly lost and
    reconcile again; compare with the ledger.

    `stop_3ds` also cancels charges waiting for 3-D Secure that the customer then never
    completes (ePay shows "3D" for ever); such a charge should stay CANCELLED.
    """
    rng = random.Random(seed)
    # Voids and refunds draw from their own generator: the charges meet the same faults with or
    # without them; so do card setups.
    extra = random.Random(seed + 1)
    setup_rng = random.Random(seed + 2)
    simulator.postlink_drop = True
    # Two terminals, as merchants run them: 3-D Secure for customers, none for recurring charges.
    simulator.terminals = [SimTerminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE, three_ds=False)]
    with PostLinkReceiver() as receiver:
        report = ChaosReport(charges=charges, setups=setups)
        rig = wire(table, dynamodb, simulator, report, seed, setup_base_url=receiver.url)
        receiver.intake = rig.cards.postlinks
        rig.stop_3ds = stop_3ds
        try:
            _create_charges(rig, rng, extra, charges)
            rig.report.after_create.update(row.status for row in _charges(dynamodb, table))
            for _wave in range(WAVES):
                started = time.perf_counter()
                _issue_voids(rig, extra)
                _issue_refunds(rig, extra)
                rig.report.refund_seconds += time.perf_counter() - started
                _reconcile(rig, charges)
            if setups:
                _run_setups(rig, setup_rng, setups)
            rig.report.setup_postlink_answers.update(receiver.answers)
            _compare(rig)
        finally:
            simulator.terminals = []
            simulator.postlink_drop = False
            simulator.postlink_duplicates = 0
    return rig.report


def wire(
    table: str,
    dynamodb: Any,
    simulator: EpaySimulator,
    report: ChaosReport,
    seed: int,
    *,
    setup_base_url: str = "http://127.0.0.1:3000",
) -> Rig:
    """Wire the use cases and the reconcilers against the simulator and the table. Card
    setups' links (their page, their postLinks) are under `setup_base_url`; the charges'
    postLinks go nowhere (the simulator drops them)."""
    clock = TestClock()
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
    allocator = InvoiceAllocator(
        DynamoInvoiceSpace(table, dynamodb),
        NullTelemetry(),
        window=timedelta(days=400),
        clock=clock,
    )
    charges = ChargeUseCases.build(
        store=store,
        gateway=gateway,
        telemetry=NullTelemetry(),
        links=PublicLinks("http://127.0.0.1:3000"),
        allocator=allocator,
        clock=clock,
    )
    refund_store = DynamoRefundStore(table, store)
    refunds = RefundService(
        store=refund_store,
        charges=store,
        transitions=charges.transitions,
        gateway=gateway,
        clock=clock,
    )
    reconciler = Reconciler(
        store=store,
        settler=charges.settler,
        transitions=charges.transitions,
        clock=clock,
        voids=charges.voids,
    )
    refund_reconciler = RefundReconciler(
        store=refund_store, charges=store, service=refunds, status=gateway.status, clock=clock
    )
    cards = _wire_cards(
        table,
        dynamodb,
        client,
        store,
        charges,
        allocator,
        clock,
        setup_base_url,
        simulator.widget_url,
    )
    # Two of each at once, as overlapping scheduled runs would.
    runs: list[Callable[[Deadline], object]] = [reconciler.run, refund_reconciler.run] * 2
    rig = Rig(
        table,
        dynamodb,
        simulator,
        clock,
        gateway,
        store,
        charges,
        refunds,
        runs,
        report,
        seed,
        refund_store,
        cards,
    )

    def run_setups(deadline: Deadline) -> None:
        done = cards.reconciler.run(deadline)
        with rig.lock:
            counted = report.setup_reconciler
            counted.update(checked=done.checked, settled=done.settled, expired=done.expired)
            counted.update({f"error:{name}": n for name, n in done.errors.items()})

    runs += [run_setups] * 2
    return rig


def _wire_cards(
    table: str,
    dynamodb: Any,
    client: EpayClient,
    store: DynamoChargeStore,
    charges: ChargeUseCases,
    allocator: InvoiceAllocator,
    clock: TestClock,
    base_url: str,
    widget_url: str,
) -> SetupParts:
    """Card setups as payments.bootstrap wires them (the same page key, invoice space and
    charge settler as the charges). The real client: a card setup never crashes mid-auth."""
    setup_store = DynamoSetupStore(table, dynamodb, clock=clock)
    settler = SetupSettler(
        store=setup_store,
        gateway=client,
        charges=charges.settler,
        telemetry=NullSetupTelemetry(),
        clock=clock,
    )
    setups = CardSetups(
        store=setup_store,
        gateway=client,
        allocator=allocator,
        links=PublicLinks(base_url),
        tokens=PageTokens(lambda: derive_key(TEST_CLIENT_SECRET)),
        widget_url=widget_url,
        clock=clock,
    )
    postlinks = PostLinkService(
        inbox=DynamoInbox(table, dynamodb, clock=clock),
        charges=store,
        settler=charges.settler,
        terminals=TerminalCodes(store, client.terminals),
        telemetry=NullPostLinkTelemetry(),
        clock=clock,
        setups=settler,
    )
    return SetupParts(
        setups=setups,
        settler=settler,
        store=setup_store,
        cards=DynamoCardStore(table, dynamodb),
        postlinks=postlinks,
        reconciler=SetupReconciler(store=setup_store, setups=settler, clock=clock),
    )


def _create_charges(rig: Rig, rng: random.Random, extra: random.Random, charges: int) -> None:
    """Create the charges, each under its drawn fault (if any)."""
    report, simulator, gateway, clock = rig.report, rig.simulator, rig.gateway, rig.clock
    started = time.perf_counter()
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
        # A held charge never captures: a fault armed for the capture would wait for the next.
        held = extra.random() < MANUAL_SHARE and (fault is None or fault[0] != "charge")
        request = ChargeRequest(
            amount=Decimal(rng.randint(100, 99999)) / 100,
            currency="KZT",
            card_id=CARD.format(rng.choice(CARDS)),
            account_id=f"customer-{n}",
            description=f"Chaos {n}",
            capture=CaptureMode.MANUAL if held else CaptureMode.AUTO,
            recurrent=rng.random() < 0.5,
        )
        # A 503 to the merchant, or a function that died: the charge is stored either way.
        with contextlib.suppress(GatewayError, Crash):
            result = rig.charges.service.create_charge(
                request, f"chaos-{rig.seed}-{n}", Deadline.after(20)
            )
            if fault == ("auth", "nonfinal_after_commit"):
                rig.nonfinal.add(result.charge.invoice_id)
        clock.set(clock.now + timedelta(seconds=1))
    gateway.crash = None
    report.create_seconds = time.perf_counter() - started


def _arm(rig: Rig, rng: random.Random, op: str, faults: list[tuple[int, str | None]]) -> None:
    """Draw a fault for the next request of `op` (one that will surely be sent) and arm it."""
    kind = rng.choices([f for _, f in faults], weights=[w for w, _ in faults])[0]
    if kind is None:
        return
    rig.count(rig.report.faults, f"{op}:{kind}")
    rig.simulator.nonfinal_code = rng.choice(NONFINAL_CODES)
    rig.simulator.inject(op, kind, count=1, delay=FAULT_DELAY)


# --- voids ----------------------------------------------------------------------------------


def _issue_voids(rig: Rig, rng: random.Random) -> None:
    """Cancel a share of the held charges (and of those waiting for 3-D Secure, with
    `stop_3ds`), each considered once: the first wave after creation, the second after the
    reconcilers settled the charges whose auth was unclear."""
    for row in _charges(rig.dynamodb, rig.table):
        held = row.status == S.AUTHORIZED.value and row.capture == CaptureMode.MANUAL.value
        waiting = rig.stop_3ds and row.status == S.REQUIRES_3DS.value
        if not (held or waiting) or row.id in rig.void_considered:
            continue
        rig.void_considered.add(row.id)
        if rng.random() >= VOID_SHARE:
            continue
        if held:  # only a held charge's cancel reaches ePay
            _arm(rig, rng, "cancel", CANCEL_FAULTS)
        rig.voided.add(row.id)
        rig.report.voids[_cancel(rig, row.id)] += 1


def _cancel(rig: Rig, charge_id: str) -> str:
    """Cancel one charge; what it answered."""
    try:
        charge = rig.charges.voids.cancel(charge_id, Deadline.after(20))
    except GatewayUnknownOutcomeError:
        return "unknown"
    except ConflictError:
        return "refused"
    except GatewayError as exc:
        return f"error:{type(exc).__name__}"
    return charge.status.value


# --- refunds --------------------------------------------------------------------------------


def _issue_refunds(rig: Rig, rng: random.Random) -> None:
    """Refund a share of the refundable charges, each by a drawn plan with a generator of its own
    (so a charge's plan is the seed's whatever else runs at once); a few charges at a time."""
    plans: list[tuple[str, str, random.Random]] = []
    for row in _charges(rig.dynamodb, rig.table):
        if row.status not in REFUNDABLE or rng.random() >= REFUND_SHARE:
            continue
        plan = rng.choices([p for _, p in PLANS], weights=[w for w, _ in PLANS])[0]
        rig.report.refund_plans[plan] += 1
        plans.append((plan, row.id, random.Random(rng.getrandbits(64))))
    with ThreadPoolExecutor(max_workers=REFUND_WORKERS) as pool:
        list(pool.map(lambda p: _run_plan(rig, *p), plans))


def _run_plan(rig: Rig, plan: str, charge_id: str, rng: random.Random) -> None:
    """One charge's refunds: one, several in turn, several at once, or one and its replay."""
    if plan == "race":
        _race(rig, rng, charge_id)
    elif plan == "series":
        for _ in range(rng.randint(2, 3)):
            _refund_once(rig, rng, charge_id, replay=False)
    else:
        _refund_once(rig, rng, charge_id, replay=plan == "replay")


def _left(rig: Rig, charge_id: str) -> tuple[Decimal, Decimal]:
    """What is left to refund of a refundable charge, and the minimum refund (0, 0: nothing)."""
    charge = rig.store.get(charge_id)
    if charge is None or charge.status.value not in REFUNDABLE:
        return Decimal(0), Decimal(0)
    minimum = minimum_refund(charge.currency)
    return (charge.refundable, minimum) if charge.refundable >= minimum else (Decimal(0), minimum)


def _amount(rng: random.Random, left: Decimal, minimum: Decimal) -> Decimal | None:
    """A refund's amount: the rest (None, or named), or a part of at least the minimum."""
    draw = rng.random()
    if draw < 0.2:
        return None
    if draw < 0.3:
        return left
    cents = rng.randint(int(minimum * 100), max(int(minimum * 100), int(left * 100)))
    return Decimal(cents) / 100


def _refund_once(rig: Rig, rng: random.Random, charge_id: str, *, replay: bool) -> None:
    """One refund of what is left (partial or whole) under a drawn fault; a replay sends the
    same request with the same key again and must be answered the same refund."""
    left, minimum = _left(rig, charge_id)
    if not left:
        return
    plan = "replay" if replay else "single"
    request = RefundRequest(_amount(rng, left, minimum), "chaos", {"plan": plan})
    _arm(rig, rng, "refund", REFUND_FAULTS)
    key = rig.key("refund")
    first = _refund(rig, charge_id, request, key)
    if not replay or first is None:
        return
    again = _refund(rig, charge_id, request, key)
    if again is None or not again.replayed or again.refund.id != first.refund.id:
        got = "nothing" if again is None else f"{again.refund.id} replayed={again.replayed}"
        rig.report.refund_mismatches.append((first.refund.id, f"replay answered {got}"))


def _race(rig: Rig, rng: random.Random, charge_id: str) -> None:
    """Several refunds of one charge at once (different keys), one fault armed among them."""
    left, minimum = _left(rig, charge_id)
    if not left:
        return
    racers = rng.randint(3, 5)
    # Each at most half of what is left (or the rest): the first to reserve always fits, so the
    # armed fault meets a request.
    half = max(minimum, (left / 2).quantize(CENT, ROUND_DOWN))
    amounts = _distinct([_amount(rng, half, minimum) for _ in range(racers)], minimum)
    _arm(rig, rng, "refund", REFUND_FAULTS)
    barrier = threading.Barrier(racers)
    requests = [RefundRequest(a, "chaos", {"plan": "race"}) for a in amounts]
    keys = [rig.key("race") for _ in requests]

    def run(request: RefundRequest, key: str) -> None:
        barrier.wait()
        _refund(rig, charge_id, request, key)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(requests, keys, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _distinct(amounts: list[Decimal | None], minimum: Decimal) -> list[Decimal | None]:
    """Racing refunds' amounts made distinct (a cent less, or the rest): two lost refunds of one
    amount are one ePay total matched two ways, which the service rightly leaves to a person."""
    taken: set[Decimal] = set()
    distinct: list[Decimal | None] = []
    for amount in amounts:
        while amount is not None and amount in taken and amount - CENT >= minimum:
            amount -= CENT
        if amount is not None and amount in taken:
            amount = None
        if amount is not None:
            taken.add(amount)
        distinct.append(amount)
    return distinct


def _refund(rig: Rig, charge_id: str, request: RefundRequest, key: str) -> RefundResult | None:
    """Ask for one refund; count what it answered."""
    after = rig.report.refunds_after_call
    try:
        result = rig.refunds.create_refund(charge_id, request, key, Deadline.after(20))
    except ConflictError:  # not refundable (any more), or too little left: ePay never heard
        rig.count(after, "refused")
        return None
    except PaymentsError as exc:
        rig.count(after, f"error:{type(exc).__name__}")
        return None
    rig.count(after, "replayed" if result.replayed else result.refund.status.value)
    return result


# --- reconciliation -------------------------------------------------------------------------


def _reconcile(rig: Rig, charges: int) -> None:
    """Run the reconcilers (two of each at once) until nothing is due, the test clock moving to
    the earliest check each round (a refund ePay never got fails an hour after it was made)."""
    # The status API is flaky while the reconcilers work.
    rig.simulator.inject("status", "in_progress", count=max(10, charges // 8))
    rig.simulator.inject("status", "500_before_commit", count=max(5, charges // 15))
    started = time.perf_counter()
    rig.report.rounds += _until_nothing_due(rig)
    rig.report.reconcile_seconds += time.perf_counter() - started


def _until_nothing_due(rig: Rig) -> int:
    """Rounds of every reconciler at once, the clock at the earliest check each time, until
    nothing (charge, refund or card setup) is due; how many rounds it took."""
    rounds = 0
    while (due := _earliest_due(rig.dynamodb, rig.table)) is not None and rounds < MAX_ROUNDS:
        rounds += 1
        rig.clock.set(due)
        runs = [
            threading.Thread(target=_guarded, args=(rig, run, Deadline.after(60)))
            for run in rig.reconcile
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
    return rounds


def _guarded(rig: Rig, run: Callable[[Deadline], object], deadline: Deadline) -> None:
    """One reconciler run; an exception ends it (as it would end the Lambda's), counted."""
    try:
        run(deadline)
    except Exception as exc:  # counted and shown; the next round goes on
        rig.count(rig.report.reconcile_errors, f"{type(exc).__name__}: {exc}")


# --- card setups ---------------------------------------------------------------------------


def _run_setups(rig: Rig, rng: random.Random, count: int) -> None:
    """Card setups, one after another: created, their page opened, paid or declined on ePay's
    page, their postLinks lost, delivered or delivered several times; then, once every postLink
    sent was answered, the reconcilers (the status API flaky again) until nothing is due: the
    clock passes the setups' first check (SETUP_CHECK_LADDER[0] after their page was opened)."""
    report, simulator = rig.report, rig.simulator
    started = time.perf_counter()
    sent = len(simulator.postlinks)
    for n in range(count):
        sent += _one_setup(rig, rng, n)
    simulator.wait_for_postlinks(sent, timeout=15)
    for setup_id in rig.setup_ids:
        setup = rig.cards.store.get(setup_id)
        report.setups_before_reconcile[setup.status.value if setup else "missing"] += 1
    simulator.inject("status", "in_progress", count=1)
    simulator.inject("status", "500_before_commit", count=1)
    report.setup_rounds = _until_nothing_due(rig)
    report.setup_seconds = time.perf_counter() - started


def _one_setup(rig: Rig, rng: random.Random, n: int) -> int:
    """One card setup (verifications and first payments in turn) under its drawn outcome and
    postLink fate; how many postLink deliveries the simulator makes for it."""
    report, simulator = rig.report, rig.simulator
    mode = (SetupMode.VERIFY, SetupMode.PAY)[n % 2]
    paying = mode is SetupMode.PAY
    approved = (n // 2) % 3 != SETUP_DECLINED
    outcome = "approve" if approved else "decline"
    if paying and rng.random() < SETUP_3DS_SHARE:
        outcome = "3ds:approve" if approved else "3ds:fail"
    fate = _draw(rng, SETUP_POSTLINKS)
    report.setup_plans[f"{mode.value}:{outcome}"] += 1
    report.setup_postlinks[fate] += 1
    request = SetupRequest(
        account_id=f"chaos-{rig.seed}-setup-{n}",  # one account each: one card each at most
        back_link=SETUP_BACK,
        mode=mode,
        amount=Decimal(rng.randint(100, 99999)) / 100 if paying else Decimal(0),
        currency="KZT" if paying else "USD",
        description=f"Chaos setup {n}" if paying else "Card verification",
        failure_back_link=SETUP_FAILED_BACK if rng.random() < 0.5 else None,
    )
    setup = rig.cards.setups.create(request, rig.key("setup")).setup
    rig.setup_ids.append(setup.id)
    page = _open_page(rig, setup)
    if page is None:
        return 0  # never paid on: the reconciler ends it EXPIRED, as the (empty) ledger says
    if paying and approved:  # the capture of this first payment (or of another) meets a fault
        kind = _draw(rng, SETUP_CAPTURE_FAULTS)
        if kind is not None:
            report.setup_faults[f"capture:{kind}"] += 1
            simulator.inject("charge", kind, count=1, delay=FAULT_DELAY)
    button, _, issuer = outcome.partition(":")
    simulator.postlink_drop = fate == "lost"
    simulator.postlink_duplicates = SETUP_DUPLICATES if fate == "duplicated" else 0
    try:
        back = submit_payment(
            simulator.payform_url, page.payment_object, button, issuer=issuer or "approve"
        )
    except PayformError as exc:
        _setup_mismatch(report, setup, None, f"the payment page refused it: {exc}")
        return 0
    finally:
        simulator.postlink_drop = True
        simulator.postlink_duplicates = 0
    expected = SETUP_BACK if approved else request.failure_back_link or SETUP_BACK
    if back != expected:
        _setup_mismatch(report, setup, None, f"ePay sent the customer to {back}, not {expected}")
    return {"lost": 0, "delivered": 1, "duplicated": 1 + SETUP_DUPLICATES}[fate]


def _open_page(rig: Rig, setup: CardSetup) -> WidgetPage | None:
    """The customer opens the setup's page (its token from its URL), trying again while ePay's
    token endpoint fails; its WidgetPage, or None."""
    url = rig.cards.setups.page_url(setup)
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(url or "").query).get("token", [""])[0]
    for _attempt in range(3):
        try:
            return rig.cards.setups.open_page(setup.id, token, Deadline.after(20))
        except GatewayError as exc:
            rig.count(rig.report.setup_faults, f"page:{type(exc).__name__}")
    return None


def _draw[T](rng: random.Random, options: list[tuple[int, T]]) -> T:
    """One of the weighted options."""
    return rng.choices([o for _, o in options], weights=[w for w, _ in options])[0]


def _setup_mismatch(
    report: ChaosReport, setup: CardSetup, ledger: str | None, problem: str
) -> None:
    """A card setup (its card, its first payment) disagreeing with the ledger."""
    what = f"setup {setup.id} ({setup.mode.value}, {setup.status.value}): {problem}"
    report.mismatches.append((setup.invoice_id, ledger, what))


def _compare_setups(rig: Rig) -> set[tuple[str, str]]:
    """Hold every card setup, its saved card and its first payment against the ledger; the
    (invoice, terminal) pairs of the setups (their charges are compared here, not with the
    scenario's charges)."""
    report = rig.report
    setups = [setup_from_item(from_attributes(i)) for i in _items(rig, "SETUP")]
    cards = {c.id: c for c in (card_from_item(from_attributes(i)) for i in _items(rig, "CARD"))}
    per_account = Counter(card.account_id for card in cards.values())
    charges: dict[tuple[str, str], list[str]] = {}
    for row in _charges(rig.dynamodb, rig.table):
        charges.setdefault((row.invoice, row.terminal), []).append(row.id)
    if sorted(s.id for s in setups) != sorted(rig.setup_ids):
        report.mismatches.append(("", None, f"setups: {len(setups)} stored, made {rig.setup_ids}"))
    for setup in setups:
        report.setups_final[setup.status.value] += 1
        report.setup_cards += per_account[setup.account_id]
        entry = rig.simulator.ledger_entry(setup.invoice_id, setup.terminal_id)
        held = charges.get((setup.invoice_id, setup.terminal_id), [])
        for problem in _setup_problems(setup, entry, per_account[setup.account_id], cards):
            _setup_mismatch(report, setup, entry.status_name if entry else None, problem)
        for problem in _first_payment_problems(rig, setup, entry, held):
            _setup_mismatch(report, setup, entry.status_name if entry else None, problem)
    return {(s.invoice_id, s.terminal_id) for s in setups}


def _setup_problems(setup: CardSetup, entry: Any, saved: int, cards: dict[str, Card]) -> list[str]:
    """What is wrong with a setup and its card against the ledger: approved means SUCCEEDED
    with the ledger's card saved once (ACTIVE, this setup's, this account's), declined means
    FAILED with no card, never paid on means EXPIRED."""
    expected = SETUP_LEDGER.get(entry.status_name) if entry else SetupStatus.EXPIRED
    if expected is None:
        return [f"the ledger shows {entry.status_name}"]
    problems = []
    if setup.status is not expected:
        problems.append(f"the ledger means {expected.value}")
    succeeded = expected is SetupStatus.SUCCEEDED
    if saved != int(succeeded):
        problems.append(f"{saved} cards saved for its account")
    if succeeded:
        card = cards.get(entry.card_id) if entry.card_id else None
        if setup.card_id is None or setup.card_id != entry.card_id:
            problems.append("its card is not the ledger's card")
        elif card is None or (card.setup_id, card.account_id) != (setup.id, setup.account_id):
            problems.append("no card item of this setup under the ledger's card id")
        elif card.status is not CardStatus.ACTIVE:
            problems.append(f"its card is {card.status.value}")
    return problems


def _first_payment_problems(rig: Rig, setup: CardSetup, entry: Any, held: list[str]) -> list[str]:
    """What is wrong with a setup's first payment: an approved paying setup has one charge,
    CAPTURED for the setup's amount on the ledger's card as the ledger has it (CHARGE of that
    amount); any other setup has none."""
    paid = (
        setup.mode is SetupMode.PAY
        and SETUP_LEDGER.get(entry.status_name if entry else "") is SetupStatus.SUCCEEDED
    )
    if len(held) != int(paid):
        return [f"{len(held)} charges hold its invoice"]
    if not paid:
        return [] if setup.charge_id is None else ["a charge id, yet no payment"]
    charge = rig.store.get(held[0])
    if charge is None or setup.charge_id != charge.id:
        return [f"its charge {setup.charge_id} is not the one holding its invoice"]
    rig.report.setup_charges_final[charge.status.value] += 1
    problems = []
    if charge.status is not S.CAPTURED:
        problems.append(f"its charge {charge.id} is {charge.status.value}")
    if charge.amount != setup.amount or charge.captured_amount != setup.amount:
        problems.append(f"its charge is {charge.amount} captured {charge.captured_amount}")
    if entry.status_name != "CHARGE" or entry.captured_amount != setup.amount:
        problems.append(f"the ledger captured {entry.captured_amount} of {setup.amount}")
    if charge.card_id != entry.card_id:
        problems.append("its charge is not on the ledger's card")
    return problems


# --- the comparison with the ledger ---------------------------------------------------------


def _compare(rig: Rig) -> None:
    """Hold every charge, refund and card setup against the simulator's ledger on its own
    terminal."""
    report, simulator = rig.report, rig.simulator
    setups = _compare_setups(rig)
    refunds: dict[str, list[RefundRow]] = {}
    for refund in _refunds(rig.dynamodb, rig.table):
        refunds.setdefault(refund.charge_id, []).append(refund)
        report.refunds_final[refund.status] += 1
    ledger_ids: Counter[str] = Counter()
    for row in _charges(rig.dynamodb, rig.table):
        if (row.invoice, row.terminal) in setups:
            continue  # a card setup's first payment (compared with its setup)
        report.final[row.status] += 1
        report.terminals[row.terminal] += 1
        entry = simulator.ledger_entry(row.invoice, row.terminal)
        in_review = _compare_refunds(report, row, entry, refunds.get(row.id, []))
        expected = _expected(entry, in_review, voided=row.id in rig.voided)
        if row.status != expected.value:
            report.mismatches.append(
                (row.invoice, entry.status_name if entry else None, row.status)
            )
        if row.id in rig.voided:
            report.voids_final[row.status] += 1
        if entry is not None:
            ledger_ids.update(r.external_id for r in entry.refunds)
    # No refund sent twice: ePay's journal (every request, answered or not) and its ledger.
    report.ledger_refunds_twice = sum(1 for n in ledger_ids.values() if n > 1)
    ours = {r.id for rows in refunds.values() for r in rows}
    sent = Counter(e.query.get("externalID", "") for e in simulator.requests("refund"))
    report.refunds_sent_twice = sum(1 for i, n in sent.items() if i in ours and n > 1)
    report.nonfinal_went_through = sum(
        1 for i in rig.nonfinal if any(e.status_name == "CHARGE" for e in _entries(simulator, i))
    )
    report.double_auths = sum(1 for e in simulator.ledger.values() if e.auth_count != 1)


def _expected(entry: Any, in_review: Decimal, *, voided: bool) -> ChargeStatus:
    """The status the ledger entry means for our charge (refunds waiting for a person left out:
    they are not in our refunded amount)."""
    if entry is None:
        return S.FAILED
    if entry.status_name in ("CHARGE", "REFUND"):
        returned = entry.refunded_amount - in_review
        if not returned:
            return S.CAPTURED
        return S.REFUNDED if returned >= entry.captured_amount else S.PARTIALLY_REFUNDED
    if entry.status_name == "3D" and voided:
        return S.CANCELLED  # stopped while it waited for 3-D Secure, never completed
    return LEDGER_TO_STATUS.get(entry.status_name, S.NEEDS_REVIEW)


def _compare_refunds(
    report: ChaosReport, row: ChargeRow, entry: Any, ours: list[RefundRow]
) -> Decimal:
    """Hold a charge's refunds and amounts against its ledger entry; what ePay returned for
    refunds of ours that wait for a person."""
    ledger = list(entry.refunds) if entry is not None else []
    times = Counter(r.external_id for r in ledger)
    amounts = {r.external_id: r.amount for r in ledger}
    mine = {r.id for r in ours}
    for refund in ours:
        problem = _refund_problem(refund, times[refund.id], amounts.get(refund.id))
        if problem:
            report.refund_mismatches.append((refund.id, problem))
        if refund.status == R.NEEDS_REVIEW:
            taken = "returned at ePay" if times[refund.id] else "not at ePay"
            why = f"{refund.amount} of {row.invoice}, {taken}: {refund.error}"
            report.refunds_in_review.append((refund.id, why))
    for external_id in times:
        if external_id not in mine:
            what = external_id or "a refund without externalID"
            report.refund_mismatches.append((what, f"in the ledger of {row.invoice}, not ours"))
    in_review = sum(
        (r.amount for r in ours if r.status == R.NEEDS_REVIEW and times[r.id]), Decimal(0)
    )
    held = sum((r.amount for r in ours if r.status in (R.PENDING, R.NEEDS_REVIEW)), Decimal(0))
    returned = entry.refunded_amount if entry is not None else Decimal(0)
    if returned - in_review != row.refunded:
        report.refund_mismatches.append(
            (row.id, f"refunded {row.refunded}; ledger {returned} ({in_review} in review)")
        )
    if row.reserved != held:
        report.refund_mismatches.append((row.id, f"reserved {row.reserved}; unsettled {held}"))
    if row.void_pending:
        report.refund_mismatches.append((row.id, "a void still pending"))
    report.refunded_ours += row.refunded
    report.refunded_ledger += returned
    report.refunded_in_review += in_review
    return in_review


def _refund_problem(refund: RefundRow, times: int, amount: Decimal | None) -> str | None:
    """What is wrong with one refund of ours against the ledger, if anything."""
    if refund.status == R.SUCCEEDED:
        if times != 1:
            return f"SUCCEEDED, in the ledger {times} times"
        if amount != refund.amount:
            return f"SUCCEEDED for {refund.amount}, the ledger returned {amount}"
        return None
    if refund.status == R.FAILED and times:
        return f"FAILED, yet in the ledger {times} times"
    if refund.status == R.PENDING:
        return "still PENDING after reconciliation"
    return None


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


def _items(rig: Rig, sk: str) -> list[dict[str, Any]]:
    """Every item of one kind (its sort key), as DynamoDB gives it."""
    return _scan(
        rig.dynamodb,
        rig.table,
        FilterExpression="sk = :k",
        ExpressionAttributeValues={":k": {"S": sk}},
    )


def _number(item: dict[str, Any], name: str) -> Decimal:
    return Decimal(item[name]["N"]) if name in item else Decimal(0)


def _charges(dynamodb: Any, table: str) -> list[ChargeRow]:
    """Every charge, oldest first."""
    items = _scan(
        dynamodb,
        table,
        FilterExpression="sk = :c",
        ExpressionAttributeValues={":c": {"S": "CHARGE"}},
        ProjectionExpression=(
            "pk, chargeSort, invoiceId, #s, terminalId, #c, refundedAmount, refundReserved, "
            "voidPending"
        ),
        ExpressionAttributeNames={"#s": "status", "#c": "capture"},
    )
    rows = [
        ChargeRow(
            id=i["pk"]["S"].removeprefix("CHARGE#"),
            invoice=i["invoiceId"]["S"],
            status=i["status"]["S"],
            terminal=i["terminalId"]["S"],
            capture=i["capture"]["S"],
            created_at=i["chargeSort"]["S"].split("#")[0],  # "<createdAt>#<id>"
            refunded=_number(i, "refundedAmount"),
            reserved=_number(i, "refundReserved"),
            void_pending=i.get("voidPending", {}).get("BOOL", False),
        )
        for i in items
    ]
    return sorted(rows, key=lambda r: (r.created_at, r.id))


def _refunds(dynamodb: Any, table: str) -> list[RefundRow]:
    """Every refund."""
    items = _scan(
        dynamodb,
        table,
        FilterExpression="begins_with(sk, :r)",
        ExpressionAttributeValues={":r": {"S": "REFUND#"}},
        ProjectionExpression="id, chargeId, amount, #s, #e",
        ExpressionAttributeNames={"#s": "status", "#e": "error"},
    )
    return [
        RefundRow(
            i["id"]["S"],
            i["chargeId"]["S"],
            Decimal(i["amount"]["N"]),
            i["status"]["S"],
            i.get("error", {}).get("M", {}).get("message", {}).get("S", ""),
        )
        for i in items
    ]


def _earliest_due(dynamodb: Any, table: str) -> datetime | None:
    """The earliest nextCheckAt in the table, charges', refunds' and card setups' (the
    scenario's view, not the reconcilers')."""
    items = _scan(
        dynamodb,
        table,
        FilterExpression="attribute_exists(nextCheckAt)",
        ProjectionExpression="nextCheckAt",
    )
    moments = [item["nextCheckAt"]["S"] for item in items]
    return from_iso(min(moments)) if moments else None
