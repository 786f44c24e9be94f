"""Log bytes per charge (issue 16): what every line carries, one "charge transitioned" line per
charge and invocation, one "events published" line per stream batch - and what stays."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from payments import bootstrap
from payments.aws.telemetry import PowertoolsTelemetry
from payments.charges.model import ChargeError, ChargeStatus, Source
from payments.errors import GatewayUnavailableError, PaymentsError
from payments.observability import logger, metrics
from payments.shared.events import DomainEvent, PublishFailure
from tests.fakes import TEST_NOW, make_charge
from tests.unit.test_telemetry import Context, load_function

S = ChargeStatus
CARD_ID = "c0000000-0000-4000-8000-000000000001"


@pytest.fixture(autouse=True)
def no_leftover_metrics() -> Iterator[None]:
    metrics.provider.clear_metrics()
    yield
    metrics.provider.clear_metrics()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def handler_doing(work: Any) -> Any:
    """A handler decorated as every function's is."""

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> None:
        work()

    return handler


# ------------------------------------------------------------------------------ every line


def test_a_line_leaves_out_what_every_line_repeated_for_nobody(logs: io.StringIO) -> None:
    # When a handler logs an INFO line and a warning, twice (the second invocation is warm)
    def work() -> None:
        logger.info("something done", extra={"charge_id": "ch_1"})
        logger.warning("something odd")

    handler_doing(work)({}, Context())
    handler_doing(work)({}, Context())

    info, warning, warm_info, _ = lines(logs)
    # Then no line carries the function's ARN (account, region), memory size or service
    for line in (info, warning, warm_info):
        assert not {"function_arn", "function_memory_size", "service"} & set(line)
        # And each still names its function and request, and carries its own keys
        assert line["function_name"] == "renewal-dispatcher"
        assert line["function_request_id"] == "req-1"
        assert line["level"] in {"INFO", "WARNING"}
    assert info["charge_id"] == "ch_1"
    # And an INFO line leaves the place and time to its message and CloudWatch's own stamp
    assert "location" not in info
    assert "timestamp" not in info
    # While a warning keeps them: it is where an engineer starts
    assert warning["location"].startswith("work:")
    assert warning["timestamp"]
    # And a warm invocation's lines do not say cold_start: false
    assert "cold_start" not in warm_info


# ------------------------------------------------------------------------------ transitions


def test_a_charge_s_steps_in_one_invocation_are_one_line_at_its_end(logs: io.StringIO) -> None:
    # Given a charge created, authorized and captured in one invocation, with a warning between
    tele = PowertoolsTelemetry()
    charge = make_charge()

    def work() -> None:
        tele.bind_charge(charge)
        tele.transitioned(charge, None, Source.API)
        tele.transitioned(replace(charge, status=S.AUTHORIZED), S.PROCESSING, Source.API)
        logger.warning("ePay call failed")
        assert [line["message"] for line in lines(logs)] == ["ePay call failed"]
        tele.transitioned(replace(charge, status=S.CAPTURED), S.AUTHORIZED, Source.API)

    # When the invocation ends
    handler_doing(work)({}, Context())

    # Then one line tells every step, in order, with the charge's ids and its request id
    warning, line = lines(logs)
    assert warning["charge_id"] == "ch_1"
    assert line["message"] == "charge transitioned"
    assert line["steps"] == "created>PROCESSING>AUTHORIZED>CAPTURED"
    assert line["to_status"] == "CAPTURED"  # the runbook's NEEDS_REVIEW query reads to_status
    assert line["source"] == "api"
    assert line["charge_id"] == "ch_1"
    assert line["invoice_id"] == "000000042"
    assert line["function_request_id"] == "req-1"
    assert line["card"] == "****0001"
    # And no correlation_id repeats the charge id, and the card id is masked
    assert "correlation_id" not in line
    assert CARD_ID not in logs.getvalue()


def test_each_charge_and_source_has_its_line_and_a_broken_chain_shows(
    logs: io.StringIO,
) -> None:
    # Given one invocation moving two charges, one of them also by another source, and one
    # step that does not start where its previous one ended (another path moved the charge)
    tele = PowertoolsTelemetry()
    first, second = make_charge(), make_charge(id="ch_2", invoice_id="000000043")
    error = ChargeError("05", "declined", "hard")

    def work() -> None:
        tele.transitioned(replace(first, status=S.UNKNOWN), S.PROCESSING, Source.RECONCILER)
        tele.transitioned(replace(second, status=S.DECLINED, error=error), S.PROCESSING, Source.API)
        tele.transitioned(replace(first, status=S.CAPTURED), S.REQUIRES_3DS, Source.RECONCILER)
        tele.transitioned(replace(first, status=S.NEEDS_REVIEW), S.CAPTURED, Source.OPERATOR)

    handler_doing(work)({}, Context())

    found = {(x["charge_id"], x["source"]): x for x in lines(logs)}
    assert set(found) == {("ch_1", "reconciler"), ("ch_2", "api"), ("ch_1", "operator")}
    assert found["ch_1", "reconciler"]["steps"] == "PROCESSING>UNKNOWN REQUIRES_3DS>CAPTURED"
    assert found["ch_1", "reconciler"]["to_status"] == "CAPTURED"
    assert found["ch_2", "api"]["error_code"] == "05"
    assert found["ch_2", "api"]["invoice_id"] == "000000043"
    assert found["ch_1", "operator"]["to_status"] == "NEEDS_REVIEW"


def test_the_steps_are_logged_when_the_handler_fails(logs: io.StringIO) -> None:
    tele = PowertoolsTelemetry()

    def work() -> None:
        tele.transitioned(make_charge(status=S.UNKNOWN), S.PROCESSING, Source.API)
        raise GatewayUnavailableError("down", operation="auth")

    with pytest.raises(GatewayUnavailableError):
        handler_doing(work)({}, Context())

    (line,) = lines(logs)
    assert line["steps"] == "PROCESSING>UNKNOWN"


def test_outside_an_invocation_a_step_is_logged_at_once(logs: io.StringIO) -> None:
    # Given no invocation (a script, a test calling a use case): no request id
    logger.clear_state()
    PowertoolsTelemetry().transitioned(make_charge(), None, Source.API)
    (line,) = lines(logs)
    assert line["steps"] == "created>PROCESSING"


# ------------------------------------------------------------------------------ the outbox


@dataclass
class Bus:
    published: list[str] = field(default_factory=list)
    refuse: str = ""

    def publish(self, events: Sequence[DomainEvent]) -> None:
        if any(e.id == self.refuse for e in events):
            from payments.errors import GatewayUnavailableError as Unavailable

            raise Unavailable("bus down", operation="PutEvents")
        self.published.extend(e.id for e in events)

    def publish_groups(self, groups: Sequence[Sequence[DomainEvent]]) -> dict[int, PublishFailure]:
        failures: dict[int, PublishFailure] = {}
        for index, group in enumerate(groups):
            try:
                self.publish(group)
            except PaymentsError as exc:
                failures[index] = PublishFailure(tuple(group), exc)
        return failures


def event(event_id: str) -> DomainEvent:
    return DomainEvent(event_id, event_id.split(":")[0], TEST_NOW, {})


def test_a_stream_batch_logs_its_published_events_on_one_line(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch of three changes, the second of which the bus refuses
    app = load_function("charge_events")
    bus = Bus(refuse="charge.failed:ch_2:DECLINED")
    monkeypatch.setattr(bootstrap, "events", lambda: bus)
    ids = {
        "1": [event("charge.succeeded:ch_1:CAPTURED"), event("card.saved:abc")],
        "2": [event("charge.failed:ch_2:DECLINED")],
        "3": [event("charge.succeeded:ch_3:CAPTURED")],
    }
    monkeypatch.setattr(app, "_events_of", lambda change: ids[change["SequenceNumber"]])
    records = [{"dynamodb": {"SequenceNumber": n}} for n in ("1", "2", "3")]

    # When the function handles it
    answer = app.lambda_handler({"Records": records}, Context())

    # Then the refused record fails alone, with its error lines
    assert answer == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    found = lines(logs)
    errors = [x for x in found if x["level"] == "ERROR"]
    assert [x["message"] for x in errors] == ["domain event not published", "record failed"]
    assert errors[0]["event_id"] == "charge.failed:ch_2:DECLINED"
    # And one line lists every event published, whose ids begin with their types
    (published,) = [x for x in found if x["message"] == "events published"]
    assert published["event_ids"] == [
        "charge.succeeded:ch_1:CAPTURED",
        "card.saved:abc",
        "charge.succeeded:ch_3:CAPTURED",
    ]
    assert published["event_ids"] == bus.published
    assert "EventPublishFailed" in capsys.readouterr().out


def test_a_batch_that_published_nothing_says_nothing(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    app = load_function("charge_events")
    monkeypatch.setattr(app, "_events_of", lambda _change: [])
    app.lambda_handler({"Records": [{"dynamodb": {"SequenceNumber": "1"}}]}, Context())
    assert logs.getvalue() == ""
