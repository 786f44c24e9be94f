"""The outbox publishes a stream batch together, end to end: charges written by the charges handler
to DynamoDB Local, their stream records delivered to the charge events handler in one invocation,
the real PutEvents requests counted as botocore sends them to moto's EventBridge, and the events
captured from the bus through a rule with an SQS target. A record EventBridge refuses an entry of,
or whose PutEvents call fails, is reported alone; Lambda's retry from it publishes it."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.epay_sim.cards import CARD_AUTH, CARD_STOLEN
from payments import bootstrap
from payments.aws.eventbridge import EventBridgeEvents
from tests.integration.charge_outbox import ChargeOutbox
from tests.integration.conftest import Stack, aws_calls
from tests.integration.test_charge_events import Bus, charge


@pytest.fixture
def bus(stack: Stack, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Iterator[Bus]:
    """The stack's bus on moto, a rule copying every `payments` event to a capture queue."""
    client: dict[str, Any] = {
        "endpoint_url": moto_endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sqs, events = boto3.client("sqs", **client), boto3.client("events", **client)
    name = (stack.resource_names or {})["PaymentsBus"]
    capture_url = sqs.create_queue(QueueName=f"capture-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    capture_arn = sqs.get_queue_attributes(QueueUrl=capture_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    rule = f"capture-{uuid.uuid4().hex[:12]}"
    events.put_rule(Name=rule, EventBusName=name, EventPattern=json.dumps({"source": ["payments"]}))
    events.put_targets(Rule=rule, EventBusName=name, Targets=[{"Id": "q", "Arn": capture_arn}])
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", moto_endpoint)
    monkeypatch.setenv("EVENT_BUS_NAME", name)
    bootstrap.reset()
    yield Bus(sqs, events, name, capture_url)
    events.remove_targets(Rule=rule, EventBusName=name, Ids=["q"])
    events.delete_rule(Name=rule, EventBusName=name)


@pytest.fixture
def outbox(stack: Stack, dynamodb_endpoint: str) -> ChargeOutbox:
    return ChargeOutbox(stack.dynamodb, dynamodb_endpoint, stack.table)


def telling(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that tell an event: a charge's settling write (CAPTURED or DECLINED)."""
    return [
        r
        for r in records
        if r["dynamodb"]["NewImage"]["status"]["S"] in ("CAPTURED", "DECLINED")
        and r["dynamodb"].get("OldImage", {}).get("status") != r["dynamodb"]["NewImage"]["status"]
    ]


def real_events_client(bus: Bus) -> Any:
    return boto3.client(
        "events",
        endpoint_url=bus.events.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class _RefusingClient:
    """EventBridge refusing the entries that name one charge, answering as EventBridge does:
    FailedEntryCount, and one Entries[i] per request entry in request order (ErrorCode on the
    refused ones, the real EventId on the others). The others really reach the bus."""

    def __init__(self, real: Any, charge_id: str) -> None:
        self._real = real
        self._charge_id = charge_id

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        kept = [e for e in Entries if self._charge_id not in e["Detail"]]
        taken = iter(self._real.put_events(Entries=kept)["Entries"] if kept else [])
        results = [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "refused by the test"}
            if self._charge_id in e["Detail"]
            else next(taken)
            for e in Entries
        ]
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


class _FirstCallFails:
    """EventBridge failing the first PutEvents call outright (throttled), taking the others."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.calls: list[list[str]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([json.loads(e["Detail"])["id"] for e in Entries])
        if len(self.calls) == 1:
            error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
            raise ClientError(error, "PutEvents")
        answer: dict[str, Any] = self._real.put_events(Entries=Entries)
        return answer


def test_one_invocation_publishes_its_records_in_ceil_entries_over_ten_calls(
    stack: Stack, bus: Bus, outbox: ChargeOutbox
) -> None:
    # Given eleven charges on the stream, captured and declined in turn (one event each)
    made = [charge(stack, CARD_AUTH if n % 2 else CARD_STOLEN) for n in range(11)]
    records = outbox.records()
    assert len(telling(records)) == 11

    # When the whole stream is delivered to the charge events function in one invocation
    with aws_calls() as calls:
        assert outbox.deliver(records) == []

    # Then the eleven events went out in ceil(11 / 10) = 2 PutEvents calls (not one a record)
    put_events = [params for operation, params in calls if operation == "PutEvents"]
    assert len(put_events) == math.ceil(11 / 10) == 2
    assert [len(p["Entries"]) for p in put_events] == [10, 1]
    # And every fact reached the bus once, with its deterministic id
    ids = sorted(e["id"] for e in bus.received())
    assert ids == sorted(
        f"charge.{'succeeded' if c['status'] == 'CAPTURED' else 'failed'}:{c['id']}:{c['status']}"
        for c in made
    )


def test_a_refused_entry_in_the_middle_fails_only_its_record_and_the_retry_publishes_it(
    stack: Stack, bus: Bus, outbox: ChargeOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three charges on the stream: declined, captured, declined
    first = charge(stack, CARD_STOLEN)
    middle = charge(stack, CARD_AUTH)
    last = charge(stack, CARD_STOLEN)
    records = outbox.records()
    # And EventBridge refusing the middle charge's entry in the one call the batch makes
    refusing = EventBridgeEvents(_RefusingClient(real_events_client(bus), middle["id"]), bus.name)
    accepting = bootstrap.events
    monkeypatch.setattr(bootstrap, "events", lambda: refusing)

    # When the batch is delivered
    failed = outbox.deliver(records)

    # Then exactly the record that captured the middle charge is reported
    (sequence,) = failed
    (record,) = [r for r in records if r["dynamodb"]["SequenceNumber"] == sequence]
    assert record["dynamodb"]["NewImage"]["id"] == {"S": middle["id"]}
    assert record["dynamodb"]["NewImage"]["status"] == {"S": "CAPTURED"}
    # And the facts before and after it were published
    assert sorted(e["id"] for e in bus.received()) == sorted(
        [f"charge.failed:{first['id']}:DECLINED", f"charge.failed:{last['id']}:DECLINED"]
    )

    # When Lambda retries from the failed record, EventBridge accepting again
    monkeypatch.setattr(bootstrap, "events", accepting)
    retry = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) >= int(sequence)]
    assert outbox.deliver(retry) == []

    # Then the refused fact is published once; the one after it again, with the same id
    ids = [e["id"] for e in bus.received()]
    assert ids.count(f"charge.succeeded:{middle['id']}:CAPTURED") == 1
    assert ids.count(f"charge.failed:{last['id']}:DECLINED") == 2
    assert ids.count(f"charge.failed:{first['id']}:DECLINED") == 1


def test_a_failed_putevents_call_fails_the_records_of_its_chunk(
    stack: Stack, bus: Bus, outbox: ChargeOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given eleven declined charges on the stream (eleven events: two calls)
    made = [charge(stack, CARD_STOLEN) for _ in range(11)]
    records = outbox.records()
    # And EventBridge throttling the first PutEvents call
    client = _FirstCallFails(real_events_client(bus))
    monkeypatch.setattr(bootstrap, "events", lambda: EventBridgeEvents(client, bus.name))

    # When the batch is delivered
    failed = outbox.deliver(records)

    # Then both calls were made, and the records whose events were in the first are reported
    assert [len(c) for c in client.calls] == [10, 1]
    in_first = set(client.calls[0])
    failed_ids = {
        f"charge.failed:{r['dynamodb']['NewImage']['id']['S']}:DECLINED"
        for r in records
        if r["dynamodb"]["SequenceNumber"] in failed
    }
    assert failed_ids == in_first
    # And the eleventh was published
    assert [e["id"] for e in bus.received()] == client.calls[1]
    assert client.calls[1] == [f"charge.failed:{made[-1]['id']}:DECLINED"]
