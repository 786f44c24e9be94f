"""Telemetry (issue 14): an idle stack is quiet (no "No application metrics to publish" warning,
no dispatcher line on an empty tick), ePay calls are timed through the client's `on_call`, a
decline is counted by category, and the reconciler reports its due backlog."""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from urllib3.exceptions import ReadTimeoutError

from payments import bootstrap
from payments.aws import telemetry
from payments.charges.declines import DeclineCategory
from payments.charges.inbox_records import Verdict
from payments.charges.model import ChargeError, ChargeStatus, Source, ThreeDSData
from payments.charges.reconciler import Reconciler
from payments.charges.settlement import ChargeSettler
from payments.charges.transitions import ChargeTransitions
from payments.epay.client import EpayClient, EpayCredentials, RetryPolicy, Timeouts
from payments.errors import GatewayUnavailableError
from payments.observability import metrics
from payments.shared.deadline import Deadline
from payments.subscriptions.model import RenewalMessage, RenewalOutcome, Subscription
from payments.subscriptions.policy import RenewalPolicy
from payments.subscriptions.renewals import DispatchReport, Renewals
from tests.fakes import (
    TEST_NOW,
    FakeGateway,
    FakeResponse,
    FakeStore,
    FakeTransport,
    RecordingTelemetry,
    make_charge,
)

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ helpers


class Context:
    """Just what Powertools' inject_lambda_context and our deadline read."""

    function_name = "renewal-dispatcher"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:renewal-dispatcher"
    memory_limit_in_mb = 256
    aws_request_id = "req-1"
    log_group_name = "/aws/lambda/renewal-dispatcher"
    log_stream_name = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py under a unique module name (each has an app.py)."""
    spec = importlib.util.spec_from_file_location(
        f"unit_{name}_app", ROOT / "functions" / name / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def caught_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised during the test, whatever pyproject's filters say."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


@pytest.fixture(autouse=True)
def no_leftover_metrics() -> Iterator[None]:
    metrics.provider.clear_metrics()
    yield
    metrics.provider.clear_metrics()


def emf_blobs(out: str) -> list[dict[str, Any]]:
    """The EMF documents printed on stdout (one JSON object a line)."""
    blobs = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


def metric_names(blob: dict[str, Any]) -> set[str]:
    return {m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}


# ------------------------------------------------------------------------------ quiet when idle


@dataclass
class EmptySubStore:
    """A subscription store with nothing due (dispatch reads only `due` and `lease`)."""

    queried: list[int] = field(default_factory=list)

    def due(self, shard: int, now: datetime, limit: int) -> list[tuple[str, str]]:
        self.queried.append(shard)
        return []

    def lease(self, *_args: Any) -> Subscription | None:
        raise AssertionError("nothing is due, nothing is leased")


@dataclass
class RecordingQueue:
    sent: list[RenewalMessage] = field(default_factory=list)

    def send(self, messages: Sequence[RenewalMessage]) -> None:
        self.sent.extend(messages)


def idle_renewals(store: EmptySubStore, queue: RecordingQueue) -> Renewals:
    return Renewals(
        store=store,  # type: ignore[arg-type]
        queue=queue,
        charges=None,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        policy=RenewalPolicy(),
        clock=lambda: TEST_NOW,
        shards=4,
        parallelism=2,
    )


def test_an_empty_dispatcher_tick_logs_nothing_and_warns_nothing(
    monkeypatch: pytest.MonkeyPatch,
    logs: io.StringIO,
    caught_warnings: list[warnings.WarningMessage],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a dispatcher whose shards hold nothing due
    store, queue = EmptySubStore(), RecordingQueue()
    monkeypatch.setattr(bootstrap, "renewals", lambda: idle_renewals(store, queue))
    app = load_function("renewal_dispatcher")

    # When the schedule ticks
    summary = app.lambda_handler({}, Context())

    # Then every shard was looked at and nothing was sent
    assert sorted(store.queried) == [0, 1, 2, 3]
    assert queue.sent == []
    assert summary == {"enqueued": 0, "skipped": 0, "shards": 4}
    # And the tick left no log line (INFO is the level in Lambda), no EMF blob and no warning
    assert logs.getvalue() == ""
    assert emf_blobs(capsys.readouterr().out) == []
    assert [str(w.message) for w in caught_warnings] == []


def test_a_dispatcher_tick_that_enqueued_logs_once_and_counts(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a dispatcher that enqueued cycles
    monkeypatch.setattr(bootstrap, "renewals", lambda: Dispatching(enqueued=3))
    app = load_function("renewal_dispatcher")

    # When the schedule ticks
    app.lambda_handler({}, Context())

    # Then one line says what it did, and RenewalsEnqueued counts it
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["renewal dispatch run"]
    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["RenewalsEnqueued"] == [3.0]
    assert "RenewalsSkipped" in metric_names(blob)


@dataclass
class Dispatching:
    """Stands in for Renewals: its dispatch answers a report."""

    enqueued: int

    def dispatch(self, deadline: Deadline) -> DispatchReport:
        return DispatchReport(enqueued=self.enqueued, skipped=0, shards=64)


def test_a_handler_that_counted_nothing_publishes_nothing_and_does_not_warn(
    caught_warnings: list[warnings.WarningMessage], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a handler decorated like every function's, that adds no metric (a GET, say)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> str:
        return "ok"

    # When it runs
    assert handler({}, Context()) == "ok"

    # Then Powertools neither printed an empty EMF blob nor warned about it
    assert emf_blobs(capsys.readouterr().out) == []
    assert not [w for w in caught_warnings if "No application metrics" in str(w.message)]


def test_a_handler_that_counted_something_still_publishes_it(
    caught_warnings: list[warnings.WarningMessage], capsys: pytest.CaptureFixture[str]
) -> None:
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        metrics.add_metric(name="ChargeCaptured", unit="Count", value=1)

    handler({}, Context())

    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["ChargeCaptured"] == [1.0]
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Payments"
    assert blob["service"] == "payments"
    assert caught_warnings == []


def test_an_empty_set_still_raises_when_asked_to() -> None:
    # raise_on_empty_metrics keeps Powertools' meaning
    from aws_lambda_powertools.metrics.exceptions import SchemaValidationError

    with pytest.raises(SchemaValidationError):
        metrics.flush_metrics(raise_on_empty_metrics=True)


# ------------------------------------------------------------------------------ ePay latency

CREDS = EpayCredentials.single("test", "client-secret-value", "terminal-uuid")
TOKEN_OK = FakeResponse(200, b'{"access_token":"tok-1","expires_in":"1200"}')
STATUS_OK = FakeResponse(
    200,
    b'{"resultCode":"100","resultMessage":"OK","transaction":{"id":"tx-1",'
    b'"invoiceID":"000000042","amount":10,"currency":"KZT","terminal":"terminal-uuid",'
    b'"statusName":"CHARGE"}}',
)


class Ticks:
    """A timer that moves 25 ms (then 40 ms, ...) per reading pair."""

    def __init__(self, steps: Sequence[float]) -> None:
        self.now = 0.0
        self.steps = list(steps)
        self.reading = 0

    def __call__(self) -> float:
        if self.reading % 2:
            self.now += self.steps.pop(0)
        self.reading += 1
        return self.now


def timed_client(
    transport: FakeTransport, calls: list[tuple[str, float, int | None]], timer: Ticks
) -> EpayClient:
    return EpayClient(
        oauth_url="https://oauth.test/oauth2/token",
        api_url="https://api.test/",
        credentials=lambda: CREDS,
        scope="webapi payment",
        timeouts=Timeouts(connect=2.0, read=7.0),
        retry=RetryPolicy(max_retries=1, jitter=lambda: 0.5, sleep=lambda _s: None),
        http=transport,  # type: ignore[arg-type]
        on_call=lambda op, ms, status: calls.append((op, round(ms, 3), status)),
        timer=timer,
    )


def test_every_epay_call_is_timed_by_operation_with_its_http_status() -> None:
    # Given ePay answering a token, then a status, with a timer that moves 25 ms and 40 ms
    calls: list[tuple[str, float, int | None]] = []
    transport = FakeTransport([TOKEN_OK, STATUS_OK])
    client = timed_client(transport, calls, Ticks([0.025, 0.040]))

    # When the status of an invoice is asked
    client.status("000000042", "", Deadline.after(20))

    # Then on_call heard each HTTP call: operation, milliseconds, HTTP status
    assert calls == [("token", 25.0, 200), ("status", 40.0, 200)]


def test_a_call_without_an_answer_is_timed_with_no_status() -> None:
    # Given a token call that times out, then one that works
    calls: list[tuple[str, float, int | None]] = []
    timeout = ReadTimeoutError(None, "https://oauth.test", "read timed out")  # type: ignore[arg-type]
    transport = FakeTransport([timeout, TOKEN_OK, STATUS_OK])
    client = timed_client(transport, calls, Ticks([7.0, 0.02, 0.03]))

    client.status("000000042", "", Deadline.after(20))

    # Then the lost call is reported too (status None), retries each on their own
    assert calls == [("token", 7000.0, None), ("token", 20.0, 200), ("status", 30.0, 200)]


def test_bootstrap_wires_the_client_to_the_epay_latency_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EPAY_SECRET_ID", "secret")
    monkeypatch.setenv("PAYMENTS_TABLE", "payments")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://pay.example")
    bootstrap.reset()
    try:
        assert bootstrap.gateway()._on_call is telemetry.epay_call
    finally:
        bootstrap.reset()


def test_epay_latency_is_published_at_the_flush_one_document_per_operation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given two ePay calls of one operation and one of another, in one invocation
    telemetry.epay_call("token", 30.04, 200)
    telemetry.epay_call("auth", 812.345, 200)
    telemetry.epay_call("token", 20.0, 200)

    # Then nothing is printed before the flush
    assert emf_blobs(capsys.readouterr().out) == []

    # When the invocation's metrics are flushed
    metrics.flush_metrics()

    # Then each operation is one document (EMF takes Operation's value from the root), the
    # calls of one operation one value array, with the same name, unit and dimensions as before
    token, auth = emf_blobs(capsys.readouterr().out)
    assert token["Operation"] == "token"
    assert token["EpayLatency"] == [30.0, 20.0]
    assert auth["Operation"] == "auth"
    assert auth["EpayLatency"] == [812.3]
    for blob in (token, auth):
        (definition,) = blob["_aws"]["CloudWatchMetrics"]
        assert definition["Namespace"] == "Payments"
        assert definition["Metrics"] == [{"Name": "EpayLatency", "Unit": "Milliseconds"}]
        assert definition["Dimensions"] == [["service", "Operation"]]
        assert blob["service"] == "payments"
        # And a call that answered 200 needs no http_status (nothing unusual to explain)
        assert "http_status" not in blob


def test_an_unusual_http_status_is_kept_in_call_order(capsys: pytest.CaptureFixture[str]) -> None:
    telemetry.epay_call("status", 40.0, 200)
    telemetry.epay_call("status", 95.0, None)  # no answer (a timeout)
    telemetry.epay_call("status", 60.0, 503)

    metrics.flush_metrics()

    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["EpayLatency"] == [40.0, 95.0, 60.0]
    assert blob["http_status"] == [200, None, 503]


def test_an_invocation_s_metrics_share_documents_where_emf_allows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an approved charge's metrics: two counts, the invoice space, three ePay calls
    metrics.add_metric(name="ChargeAuthorized", unit="Count", value=1)
    metrics.add_metric(name="ChargeCaptured", unit="Count", value=1)
    telemetry.PowertoolsInvoiceTelemetry().space_used("terminal-uuid", 0.125)
    for operation in ("token", "auth", "capture"):
        telemetry.epay_call(operation, 10.0, 200)

    # When the invocation ends
    metrics.flush_metrics()

    # Then they take three documents, not six: the counts, the terminal's share and the first
    # operation in one (a metric directive each), then one per further operation
    main, auth, capture = emf_blobs(capsys.readouterr().out)
    directives = main["_aws"]["CloudWatchMetrics"]
    assert [d["Dimensions"] for d in directives] == [
        [["service"]],
        [["service", "Terminal"]],
        [["service", "Operation"]],
    ]
    assert [[m["Name"] for m in d["Metrics"]] for d in directives] == [
        ["ChargeAuthorized", "ChargeCaptured"],
        ["InvoiceSpaceUsedPercent"],
        ["EpayLatency"],
    ]
    assert directives[1]["Metrics"] == [{"Name": "InvoiceSpaceUsedPercent", "Unit": "Percent"}]
    assert {d["Namespace"] for d in directives} == {"Payments"}
    assert main["Terminal"] == "terminal-uuid"
    assert main["InvoiceSpaceUsedPercent"] == [12.5]
    assert (main["Operation"], main["EpayLatency"]) == ("token", [10.0])
    assert (auth["Operation"], capture["Operation"]) == ("auth", "capture")
    assert len(auth["_aws"]["CloudWatchMetrics"]) == 1
    # And a second flush has nothing left to say
    metrics.flush_metrics()
    assert emf_blobs(capsys.readouterr().out) == []


def test_a_full_value_array_is_published_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    # EMF takes at most 100 values of a metric in one document
    for n in range(101):
        telemetry.epay_call("status", float(n), 200)

    (full,) = emf_blobs(capsys.readouterr().out)
    assert full["EpayLatency"] == [float(n) for n in range(100)]
    metrics.flush_metrics()
    (rest,) = emf_blobs(capsys.readouterr().out)
    assert rest["EpayLatency"] == [100.0]


def test_a_set_timestamp_stamps_the_dimensioned_metrics_of_that_flush(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The reconciler stamps a shard run's metrics with its tick
    tick = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    metrics.set_timestamp(tick)
    telemetry.epay_call("status", 5.0, 200)
    metrics.flush_metrics()
    telemetry.epay_call("status", 6.0, 200)
    metrics.flush_metrics()

    stamped, later = emf_blobs(capsys.readouterr().out)
    assert stamped["_aws"]["Timestamp"] == int(tick.timestamp() * 1000)
    assert later["_aws"]["Timestamp"] != stamped["_aws"]["Timestamp"]


# ------------------------------------------------------------------------------ outcomes


@pytest.mark.parametrize(
    ("category", "dimension"),
    [
        (DeclineCategory.HARD, "hard"),
        (DeclineCategory.SOFT, "soft"),
        ("something-new", "other"),
    ],
)
def test_a_decline_is_counted_by_its_category(
    category: str, dimension: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a declined charge
    charge = make_charge(
        status=ChargeStatus.DECLINED, error=ChargeError("05", "declined", category)
    )

    # When its outcome is reported
    telemetry.PowertoolsTelemetry().outcome(charge)

    # Then ChargeDeclined is counted with the invocation's other metrics, and
    # ChargeDeclinedByCategory with its (bounded) Category in a directive of its own
    assert metrics.metric_set["ChargeDeclined"]["Value"] == [1.0]
    metrics.flush_metrics()
    (blob,) = emf_blobs(capsys.readouterr().out)
    assert blob["ChargeDeclined"] == [1.0]
    assert blob["ChargeDeclinedByCategory"] == [1.0]
    assert blob["Category"] == dimension
    by_category = blob["_aws"]["CloudWatchMetrics"][1]
    assert by_category["Dimensions"] == [["service", "Category"]]
    assert by_category["Metrics"] == [{"Name": "ChargeDeclinedByCategory", "Unit": "Count"}]


def test_a_charge_through_3ds_counts_completed_once(capsys: pytest.CaptureFixture[str]) -> None:
    three_ds = ThreeDSData("pareq", "md", "https://acs", "tok", TEST_NOW)
    charge = make_charge(status=ChargeStatus.CAPTURED, three_ds=three_ds)
    tele = telemetry.PowertoolsTelemetry()

    tele.transitioned(
        replace(charge, status=ChargeStatus.AUTHORIZED), ChargeStatus.REQUIRES_3DS, Source.API
    )
    tele.transitioned(charge, ChargeStatus.AUTHORIZED, Source.API)  # the capture after it
    tele.transitioned(make_charge(status=ChargeStatus.CAPTURED), ChargeStatus.UNKNOWN, Source.API)

    assert metrics.metric_set["ThreeDSCompleted"]["Value"] == [1.0]


def test_every_verdict_and_renewal_outcome_has_a_metric() -> None:
    from payments.aws.renewal_telemetry import _RENEWAL_METRICS

    assert set(telemetry._VERDICT_METRICS) == {v.value for v in Verdict}
    assert set(_RENEWAL_METRICS) == set(RenewalOutcome)


# ------------------------------------------------------------------------------ the backlog


def reconciler_over(
    store: FakeStore, clock: Callable[[], datetime], gateway: FakeGateway
) -> Reconciler:
    tele = RecordingTelemetry()
    transitions = ChargeTransitions(store=store, telemetry=tele, clock=clock)
    settler = ChargeSettler(store=store, gateway=gateway, transitions=transitions, telemetry=tele)
    return Reconciler(store=store, settler=settler, transitions=transitions, clock=clock)


def test_the_reconciler_reports_its_due_backlog_and_the_longest_wait() -> None:
    # Given three charges due (for 10 min, 2 min and now) and one due later
    store = FakeStore()
    now = TEST_NOW + timedelta(hours=1)
    for n, waited in enumerate((timedelta(minutes=10), timedelta(minutes=2), timedelta(0))):
        charge = make_charge(
            id=f"ch_{n}",
            invoice_id=f"00000004{n}",
            idempotency_key=f"k{n}",
            status=ChargeStatus.UNKNOWN,
            next_check_at=now - waited,
        )
        store.charges[charge.id], store.history[charge.id] = charge, []
    later = make_charge(
        id="ch_later", status=ChargeStatus.UNKNOWN, next_check_at=now + timedelta(minutes=5)
    )
    store.charges[later.id], store.history[later.id] = later, []

    # When a run checks them (ePay's status API down: each is rescheduled)
    down = GatewayUnavailableError("down", operation="status")
    gateway = FakeGateway(status_answers=[down, down, down])
    report = reconciler_over(store, lambda: now, gateway).run(Deadline.after(60))

    # Then the report counts the backlog it found and how long the oldest had waited
    assert report.due == 3
    assert report.oldest_due_seconds == 600
    assert report.checked == 3


def test_an_idle_reconciler_reports_an_empty_backlog() -> None:
    report = reconciler_over(FakeStore(), lambda: TEST_NOW, FakeGateway()).run(Deadline.after(60))
    assert (report.due, report.oldest_due_seconds, report.checked) == (0, 0, 0)
