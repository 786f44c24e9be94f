"""EventBridgeEvents against a recording fake client: a stream batch's groups of events go out in
as few PutEvents calls as the limits allow (ten entries, 256 KB), and every group the bus did not
wholly take is told apart from the others, whether EventBridge refused one of its entries or the
call itself failed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from payments.aws.eventbridge import (
    MAX_BYTES_PER_CALL,
    EventBridgeEvents,
    chunked,
    entry_bytes,
)
from payments.errors import EventPublishError
from payments.shared.events import DomainEvent
from tests.fakes import TEST_NOW

BUS = "payments-bus"


@dataclass
class RecordingEventBridge:
    """EventBridge's PutEvents as a fake: records every call's entries. It refuses the entries
    whose event id is in `refuse` as EventBridge does (FailedEntryCount, and one Entries[i] per
    request entry in request order, ErrorCode on the refused), and raises a ClientError on the
    calls whose number (1-based) is in `raise_on`."""

    refuse: set[str] = field(default_factory=set)
    raise_on: set[int] = field(default_factory=set)
    calls: list[list[dict[str, Any]]] = field(default_factory=list)

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        if len(self.calls) in self.raise_on:
            error = {"Error": {"Code": "InternalException", "Message": "try again"}}
            raise ClientError(error, "PutEvents")
        results: list[dict[str, Any]] = []
        for n, entry in enumerate(Entries):
            if json.loads(entry["Detail"])["id"] in self.refuse:
                results.append({"ErrorCode": "InternalFailure", "ErrorMessage": "try again"})
            else:
                results.append({"EventId": f"ev-{len(self.calls)}-{n}"})
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}

    def sent_ids(self, call: int | None = None) -> list[str]:
        """The event ids sent, in order (of one call, 0-based, or of all)."""
        calls = self.calls if call is None else [self.calls[call]]
        return [json.loads(e["Detail"])["id"] for entries in calls for e in entries]


def event(event_id: str, data: dict[str, Any] | None = None) -> DomainEvent:
    return DomainEvent(event_id, event_id.split(":")[0], TEST_NOW, data or {})


def groups_of(sizes: list[int]) -> list[list[DomainEvent]]:
    """Groups (a stream record's events each) of the given sizes, ids g<group>e<event>."""
    return [
        [event(f"charge.succeeded:g{g}e{n}") for n in range(size)] for g, size in enumerate(sizes)
    ]


def test_a_batch_of_groups_goes_out_in_calls_of_ten_entries() -> None:
    # Given 25 groups of one event and a removed card's group of three in the middle (28 entries)
    client = RecordingEventBridge()
    sizes = [1] * 12 + [3] + [1] * 13
    groups = groups_of(sizes)

    # When they are published together
    failures = EventBridgeEvents(client, BUS).publish_groups(groups)

    # Then every entry went out, in order, in ceil(28 / 10) = 3 calls of at most ten entries
    assert failures == {}
    assert len(client.calls) == math.ceil(sum(sizes) / 10) == 3
    assert [len(c) for c in client.calls] == [10, 10, 8]
    assert client.sent_ids() == [e.id for g in groups for e in g]
    # And each entry is the event on our bus, as publish() sends it
    first = client.calls[0][0]
    assert (first["Source"], first["DetailType"], first["EventBusName"]) == (
        "payments",
        "charge.succeeded",
        BUS,
    )
    assert first["Time"] == TEST_NOW
    assert json.loads(first["Detail"])["id"] == "charge.succeeded:g0e0"


def test_a_refused_entry_fails_only_its_group() -> None:
    # Given five groups, EventBridge refusing the one event of the third
    client = RecordingEventBridge(refuse={"charge.succeeded:g2e0"})
    groups = groups_of([1, 2, 1, 1, 1])

    # When they are published
    failures = EventBridgeEvents(client, BUS).publish_groups(groups)

    # Then one call was made, and only the third group failed, naming its refused event and code
    assert len(client.calls) == 1
    assert list(failures) == [2]
    assert failures[2].refused == (groups[2][0],)
    assert isinstance(failures[2].error, EventPublishError)
    assert "InternalFailure" in str(failures[2].error)


def test_a_group_fails_whole_when_one_of_its_entries_is_refused() -> None:
    # Given a removed card's group of three events (after nine others: it straddles two calls),
    # EventBridge refusing its last event only
    client = RecordingEventBridge(refuse={"charge.succeeded:g9e2"})
    groups = groups_of([1] * 9 + [3])

    # When they are published
    failures = EventBridgeEvents(client, BUS).publish_groups(groups)

    # Then two calls were made, and the group fails, though two of its events were taken
    assert [len(c) for c in client.calls] == [10, 2]
    assert list(failures) == [9]
    assert [e.id for e in failures[9].refused] == ["charge.succeeded:g9e2"]


def test_a_failed_call_fails_the_groups_of_its_chunk_and_the_next_calls_are_made() -> None:
    # Given 25 groups of one event, the eighth a group of three (it straddles calls 1 and 2), and
    # the second PutEvents call raising
    client = RecordingEventBridge(raise_on={2})
    groups = groups_of([1] * 8 + [3] + [1] * 16)

    # When they are published
    failures = EventBridgeEvents(client, BUS).publish_groups(groups)

    # Then all three calls were made (an earlier call's fate stops no later one)
    assert [len(c) for c in client.calls] == [10, 10, 7]
    # And exactly the groups with an entry in the second call failed: the straddling group (its
    # last event went in it) and the next nine; those of the first and third calls were taken
    in_second_call = set(client.sent_ids(1))
    expected = {i for i, g in enumerate(groups) if any(e.id in in_second_call for e in g)}
    assert set(failures) == expected == set(range(8, 18))
    assert [e.id for e in failures[8].refused] == ["charge.succeeded:g8e2"]
    assert "ClientError" in str(failures[8].error)
    assert isinstance(failures[8].error.__cause__, ClientError)


def test_an_answer_that_does_not_say_which_entries_failed_fails_the_whole_call() -> None:
    # Given EventBridge (or a proxy) answering FailedEntryCount without one entry per request entry
    class Vague:
        calls = 0

        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            self.calls += 1
            return {"FailedEntryCount": 1, "Entries": []}

    groups = groups_of([1, 1, 1])

    # When three groups are published
    failures = EventBridgeEvents(Vague(), BUS).publish_groups(groups)

    # Then none can be counted as published: every group of the call failed
    assert set(failures) == {0, 1, 2}
    assert "refused 1 of 3" in str(failures[0].error)


def test_an_event_that_cannot_be_serialised_fails_its_group_unsent() -> None:
    # Given three groups, the second carrying a float (money is never a float: jsonutil refuses)
    client = RecordingEventBridge()
    groups = groups_of([1, 1, 1])
    groups[1] = [event("charge.succeeded:bad", {"amount": 1.5})]

    # When they are published
    failures = EventBridgeEvents(client, BUS).publish_groups(groups)

    # Then the second fails alone and is not sent; the others go out in one call
    assert list(failures) == [1]
    assert isinstance(failures[1].error.__cause__, TypeError)
    assert client.sent_ids() == ["charge.succeeded:g0e0", "charge.succeeded:g2e0"]


def test_large_entries_are_split_by_the_calls_byte_budget() -> None:
    # Given five events of ~100 KB each (three would pass PutEvents' 256 KB)
    client = RecordingEventBridge()
    big = "x" * 100_000
    groups = [[event(f"charge.succeeded:big{n}", {"note": big})] for n in range(5)]

    # When they are published
    failures = EventBridgeEvents(client, BUS).publish_groups(groups)

    # Then each call stays under 256 KB as EventBridge counts it: two, two and one
    assert failures == {}
    assert [len(c) for c in client.calls] == [2, 2, 1]
    assert all(sum(entry_bytes(e) for e in c) < MAX_BYTES_PER_CALL for c in client.calls)


def test_an_entry_is_counted_as_eventbridge_counts_it() -> None:
    # Given an entry with a Time and a non-ASCII detail
    entry = {
        "Source": "payments",
        "DetailType": "charge.succeeded",
        "Detail": '{"d":"Қазақстан"}',
        "EventBusName": "not counted",
        "Time": datetime(2026, 12, 6),
    }
    # Then its size is 14 for the Time plus the UTF-8 bytes of Source, DetailType and Detail (the
    # bus name is not counted)
    assert entry_bytes(entry) == 14 + 8 + 16 + len('{"d":"Қазақстан"}'.encode())
    # And an entry alone over the budget is a call of its own (for EventBridge to refuse)
    huge = {**entry, "Detail": "x" * MAX_BYTES_PER_CALL}
    assert [list(r) for r in chunked([entry, huge, entry])] == [[0], [1], [2]]


def test_publish_sends_in_tens_and_raises_the_first_refusal() -> None:
    # Given 23 events for publish() (the renewal worker's path)
    client = RecordingEventBridge()
    events = [event(f"subscription.renewed:s{n}", {"amount": Decimal("990.00")}) for n in range(23)]
    # When they are published / Then in three calls of at most ten
    EventBridgeEvents(client, BUS).publish(events)
    assert [len(c) for c in client.calls] == [10, 10, 3]

    # Given EventBridge refusing an event of the second call
    refusing = RecordingEventBridge(refuse={"subscription.renewed:s12"})
    # When they are published / Then EventPublishError names the refusal; every call was made
    with pytest.raises(EventPublishError, match="refused the event"):
        EventBridgeEvents(refusing, BUS).publish(events)
    assert len(refusing.calls) == 3

    # Given the first call raising / Then EventPublishError, from the client's error
    raising = RecordingEventBridge(raise_on={1})
    with pytest.raises(EventPublishError) as caught:
        EventBridgeEvents(raising, BUS).publish(events)
    assert isinstance(caught.value.__cause__, ClientError)
