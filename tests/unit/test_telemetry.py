"""Telemetry (issue 14): an idle stack is quiet (no "No application metrics to publish" warning,
no dispatcher line on an empty tick), a decline is counted by category, and the reconciler reports
its due backlog. ePay's latency metrics: test_epay_latency_metrics.py."""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from payments import bootstrap
from payments.aws import telemetry
from payments.charges.declines import DeclineCategory
from payments.charges.inbox_records import Verdict
from payments.charges.model import ChargeError, ChargeStatus, Source, ThreeDSData
from payments.charges.reconciler import Reconciler
from payments.charges.settlement import ChargeSettler
from payments.charges.transitions import ChargeTransitions
from payments.errors import GatewayUnavailableError
from payments.observability import metrics
from payments.shared.deadline import Deadline
from payments.subscriptions.model import RenewalMessage, RenewalOutcome, Subscription
from payments.subscriptions.policy import RenewalPolicy
from payments.subscriptions.renewals import DispatchReport, Renewals
from tests.fakes import (
    TEST_NOW,
    FakeGateway,
    FakeStore,
    RecordingTelemetry,
    make_charge,
)
from tests.unit.emf import emf_blobs, metric_names

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("fresh_metrics")


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
