"""ePay latency metrics (issue 14): every ePay call is timed through the client's `on_call` by
operation and HTTP status, and published at the flush in as few EMF documents as EMF allows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from urllib3.exceptions import ReadTimeoutError

from payments import bootstrap
from payments.aws import telemetry
from payments.epay.client import EpayClient, RetryPolicy
from payments.observability import metrics
from payments.shared.deadline import Deadline
from tests.fakes import FakeResponse, FakeTransport, epay_client
from tests.unit.emf import emf_blobs

pytestmark = pytest.mark.usefixtures("fresh_metrics")

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
    return epay_client(
        transport,
        RetryPolicy(max_retries=1, jitter=lambda: 0.5, sleep=lambda _s: None),
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
