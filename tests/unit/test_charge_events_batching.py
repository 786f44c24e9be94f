"""The charge events function publishes a whole stream batch together: one invocation's records
make ceil(entries / 10) PutEvents calls, not one a record, and a record still fails alone - its
events not built, one of its entries refused, or its call failed - reported by sequence number
with its error lines, while the records after it are still published."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from payments import bootstrap
from payments.aws.eventbridge import EventBridgeEvents
from payments.observability import metrics
from payments.shared.events import DomainEvent
from tests.fakes import TEST_NOW
from tests.unit.test_eventbridge_batching import RecordingEventBridge
from tests.unit.test_telemetry import Context, load_function


@pytest.fixture(autouse=True)
def no_leftover_metrics() -> Iterator[None]:
    metrics.provider.clear_metrics()
    yield
    metrics.provider.clear_metrics()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def event(event_id: str) -> DomainEvent:
    return DomainEvent(event_id, event_id.split(":")[0], TEST_NOW, {})


def handler_with(
    monkeypatch: pytest.MonkeyPatch,
    client: RecordingEventBridge,
    events_by_sequence: Mapping[str, list[DomainEvent] | Exception],
) -> Any:
    """The function, its bus an EventBridgeEvents on `client`, each record's events (or the
    error building them raises) looked up by its sequence number."""
    app = load_function("charge_events")
    monkeypatch.setattr(bootstrap, "events", lambda: EventBridgeEvents(client, "bus"))

    def events_of(change: Mapping[str, Any]) -> list[DomainEvent]:
        found = events_by_sequence[change["SequenceNumber"]]
        if isinstance(found, Exception):
            raise found
        return found

    monkeypatch.setattr(app, "_events_of", events_of)
    return app.lambda_handler


def stream(sequences: list[str]) -> dict[str, Any]:
    return {"Records": [{"dynamodb": {"SequenceNumber": s}} for s in sequences]}


def charged(n: int) -> list[DomainEvent]:
    return [event(f"charge.succeeded:ch_{n}:CAPTURED")]


SEQUENCES = [f"{n:03}" for n in range(25)]


def test_a_batch_of_25_records_makes_three_putevents_calls(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    # Given 25 stream records, each a captured charge, the 13th a removed card telling three
    # events (27 entries)
    client = RecordingEventBridge()
    events = {s: charged(n) for n, s in enumerate(SEQUENCES)}
    events["012"] = [event("card.removed:c1"), event("payment_method.removed:s1"), event("x:2")]
    handler = handler_with(monkeypatch, client, events)

    # When the function is invoked with them
    answer = handler(stream(SEQUENCES), Context())

    # Then no record failed, and the events went out in ceil(27 / 10) = 3 calls, in record order
    assert answer == {"batchItemFailures": []}
    assert len(client.calls) == math.ceil(27 / 10) == 3
    expected = [e.id for s in SEQUENCES for e in events[s]]
    assert client.sent_ids() == expected
    # And one "events published" line lists them all
    (published,) = [x for x in lines(logs) if x["message"] == "events published"]
    assert published["event_ids"] == expected


def test_a_refused_entry_in_the_middle_fails_exactly_its_record(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 25 records, EventBridge refusing the event of the 15th (ErrorCode in its entry)
    refused = "charge.succeeded:ch_14:CAPTURED"
    client = RecordingEventBridge(refuse={refused})
    handler = handler_with(monkeypatch, client, {s: charged(n) for n, s in enumerate(SEQUENCES)})

    # When the function is invoked
    answer = handler(stream(SEQUENCES), Context())

    # Then still three calls, and only the 15th record is reported, by its sequence number
    assert len(client.calls) == 3
    assert answer == {"batchItemFailures": [{"itemIdentifier": "014"}]}
    # And its error lines are those of a record that failed: the event, then the record
    found = lines(logs)
    errors = [x for x in found if x["level"] == "ERROR"]
    assert [x["message"] for x in errors] == ["domain event not published", "record failed"]
    assert errors[0]["event_id"] == refused
    assert (errors[1]["item"], errors[1]["error"]) == ("014", "EventPublishError")
    assert "InternalFailure" in errors[1]["exception"]
    # And the records after it were published (one line, the refused id not in it)
    (published,) = [x for x in found if x["message"] == "events published"]
    assert published["event_ids"] == [
        f"charge.succeeded:ch_{n}:CAPTURED" for n in range(25) if n != 14
    ]
    assert "EventPublishFailed" in capsys.readouterr().out


def test_a_raising_putevents_fails_the_records_of_its_chunk(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    # Given 25 records of one event, the 9th a removed card's three (it straddles the first two
    # calls), and the second PutEvents call raising
    client = RecordingEventBridge(raise_on={2})
    events = {s: charged(n) for n, s in enumerate(SEQUENCES)}
    events["008"] = [event("card.removed:c1"), event("payment_method.removed:s1"), event("x:2")]
    handler = handler_with(monkeypatch, client, events)

    # When the function is invoked
    answer = handler(stream(SEQUENCES), Context())

    # Then the three calls were made, and the records with an entry in the second failed: the
    # straddling one (all-or-nothing, though two of its events went in the first) and the next
    # nine; the lowest, where Lambda restarts, is the straddling record
    assert [len(c) for c in client.calls] == [10, 10, 7]
    failed = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
    assert failed == SEQUENCES[8:18]
    records_failed = [x["item"] for x in lines(logs) if x["message"] == "record failed"]
    assert records_failed == SEQUENCES[8:18]
    # And the ids published are those EventBridge took: the first and third calls'
    (published,) = [x for x in lines(logs) if x["message"] == "events published"]
    assert published["event_ids"] == client.sent_ids(0) + client.sent_ids(2)
    assert "card.removed:c1" in published["event_ids"]


def test_records_without_events_are_skipped_and_an_unbuildable_one_fails_alone(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    # Given five records: two tell nothing, one's events cannot be built, two are charges
    client = RecordingEventBridge()
    events: dict[str, list[DomainEvent] | Exception] = {
        "1": [],
        "2": charged(2),
        "3": KeyError("status"),
        "4": [],
        "5": charged(5),
    }
    handler = handler_with(monkeypatch, client, events)

    # When the function is invoked
    answer = handler(stream(["1", "2", "3", "4", "5"]), Context())

    # Then the two events go out in one call, the skipped records add nothing to it
    assert client.sent_ids() == ["charge.succeeded:ch_2:CAPTURED", "charge.succeeded:ch_5:CAPTURED"]
    assert len(client.calls) == 1
    # And only the unbuildable record fails, with its "record failed" line (no event was lost)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "3"}]}
    errors = [x for x in lines(logs) if x["level"] == "ERROR"]
    assert [(x["message"], x["item"], x["error"]) for x in errors] == [
        ("record failed", "3", "KeyError")
    ]


def test_a_batch_that_tells_nothing_makes_no_call_and_builds_no_bus(
    monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    # Given records that tell nothing, and a bus that cannot even be built
    app = load_function("charge_events")

    def no_bus() -> EventBridgeEvents:
        raise AssertionError("the bus was asked for")

    monkeypatch.setattr(bootstrap, "events", no_bus)
    monkeypatch.setattr(app, "_events_of", lambda _change: [])

    # When the function is invoked / Then nothing failed and nothing was logged
    assert app.lambda_handler(stream(["1", "2"]), Context()) == {"batchItemFailures": []}
    assert logs.getvalue() == ""
