"""charge.* events come from the table's stream (the outbox), end to end: the charges handler writes
to DynamoDB Local, the stream's records are read back and fed to the charge events handler as a real
DynamoDB stream event (template filter applied), and the events are captured from moto's
EventBridge bus through a rule with an SQS target, as a consumer would see them. One invocation
publishes its whole batch together (the real PutEvents requests are counted as botocore sends
them); a record EventBridge refuses an entry of, or whose call fails, is reported alone, and
Lambda's retry from it publishes it."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.epay_sim.cards import CARD_3DS, CARD_AUTH, CARD_STOLEN
from payments import bootstrap
from payments.aws.eventbridge import EventBridgeEvents
from tests.integration.charge_outbox import ChargeOutbox
from tests.integration.conftest import Stack, aws_calls, create_event
from tests.integration.test_refunds import cancel_event, refund_event


@dataclass
class Bus:
    sqs: Any
    events: Any
    name: str
    capture_url: str
    seen: list[dict[str, Any]] = field(default_factory=list)

    def received(self) -> list[dict[str, Any]]:
        """Every event that reached the bus so far (detail), copies included."""
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.capture_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                return self.seen
            for message in messages:
                self.seen.append(json.loads(message["Body"])["detail"])
                self.sqs.delete_message(
                    QueueUrl=self.capture_url, ReceiptHandle=message["ReceiptHandle"]
                )


@pytest.fixture
def bus(stack: Stack, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Iterator[Bus]:
    client = {
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


def charge(stack: Stack, card: str) -> dict[str, Any]:
    body = {
        "amount": 1500.5,
        "currency": "KZT",
        "cardId": card,
        "accountId": "customer-42",
        "description": "Order 42",
    }
    answer = stack.invoke(create_event(body, key=uuid.uuid4().hex))
    assert answer.status == 201, answer.body
    return dict(answer.body)


def test_each_fact_is_published_once_from_the_stream(
    stack: Stack, bus: Bus, outbox: ChargeOutbox
) -> None:
    # Given three charges: captured, declined and waiting for 3-D Secure
    captured = charge(stack, CARD_AUTH)
    declined = charge(stack, CARD_STOLEN)
    three_ds = charge(stack, CARD_3DS)
    assert (captured["status"], declined["status"], three_ds["status"]) == (
        "CAPTURED",
        "DECLINED",
        "REQUIRES_3DS",
    )
    # Then the charge path itself published nothing (the stream is the only publisher)
    assert bus.received() == []

    # When the table's stream is delivered to the charge events function
    records = outbox.records()
    assert records
    assert all(r["dynamodb"]["NewImage"]["sk"] == {"S": "CHARGE"} for r in records)
    assert {r["eventSource"] for r in records} == {"aws:dynamodb"}
    assert outbox.deliver(records) == []

    # Then exactly one event per fact reached the bus, with its deterministic id
    events = bus.received()
    by_id = {e["id"]: e for e in events}
    assert len(events) == len(by_id) == 3
    assert set(by_id) == {
        f"charge.succeeded:{captured['id']}:CAPTURED",
        f"charge.failed:{declined['id']}:DECLINED",
        f"charge.requires_action:{three_ds['id']}:REQUIRES_3DS",
    }
    succeeded = by_id[f"charge.succeeded:{captured['id']}:CAPTURED"]
    assert succeeded["data"]["status"] == "CAPTURED"
    assert succeeded["data"]["cardId"] == "****0001"
    failed = by_id[f"charge.failed:{declined['id']}:DECLINED"]
    assert failed["data"]["error"]["code"]
    action = by_id[f"charge.requires_action:{three_ds['id']}:REQUIRES_3DS"]["data"]["nextAction"]
    assert action == three_ds["nextAction"]
    assert "/3ds?token=" in action["url"]

    # When Lambda redelivers the same batch (a retry after a timeout, say)
    assert outbox.deliver(records) == []
    # Then the copies carry the same ids: deduped, still one event per fact
    again = bus.received()[3:]
    assert sorted(e["id"] for e in again) == sorted(by_id)
    # And the only new write is the card first seen on the captured charge (recorded once,
    # though its change was delivered twice), which tells card.saved in its turn
    cards = outbox.records()
    assert [r["dynamodb"]["NewImage"]["sk"] for r in cards] == [{"S": "CARD"}]
    assert outbox.deliver(cards) == []
    saved = bus.received()[6:]
    assert [e["type"] for e in saved] == ["card.saved"]
    assert saved[0]["data"]["source"] == "charge"
    assert saved[0]["data"]["accountId"] == "customer-42"
    assert outbox.records() == []


class _RefusingClient:
    """EventBridge refusing the entries of one charge, answering as EventBridge does:
    FailedEntryCount, and one Entries[i] per request entry in request order (ErrorCode on the
    refused ones, the real EventId on the others)."""

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


def test_a_refused_publish_fails_only_its_record_and_the_retry_publishes_it(
    stack: Stack, bus: Bus, outbox: ChargeOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a captured and a declined charge on the stream
    captured = charge(stack, CARD_AUTH)
    declined = charge(stack, CARD_STOLEN)
    records = outbox.records()
    real = real_events_client(bus)
    # And EventBridge refusing the captured charge's event
    refusing = EventBridgeEvents(_RefusingClient(real, captured["id"]), bus.name)
    accepting = bootstrap.events
    monkeypatch.setattr(bootstrap, "events", lambda: refusing)

    # When the batch is delivered
    failed = outbox.deliver(records)

    # Then exactly the record that settled the captured charge is reported failed
    (sequence,) = failed
    (failed_record,) = [r for r in records if r["dynamodb"]["SequenceNumber"] == sequence]
    assert failed_record["dynamodb"]["NewImage"]["status"] == {"S": "CAPTURED"}
    assert failed_record["dynamodb"]["NewImage"]["pk"] == {"S": f"CHARGE#{captured['id']}"}
    # And the other fact was published
    assert [e["id"] for e in bus.received()] == [f"charge.failed:{declined['id']}:DECLINED"]

    # When Lambda retries from the failed record with EventBridge accepting again
    monkeypatch.setattr(bootstrap, "events", accepting)
    retry = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) >= int(sequence)]
    assert outbox.deliver(retry) == []

    # Then the lost event is published, and every fact was told (copies share ids)
    ids = [e["id"] for e in bus.received()]
    assert set(ids) == {
        f"charge.failed:{declined['id']}:DECLINED",
        f"charge.succeeded:{captured['id']}:CAPTURED",
    }
    assert ids.count(f"charge.succeeded:{captured['id']}:CAPTURED") == 1


def test_refund_outcomes_and_voids_are_published_from_the_stream(
    stack: Stack, bus: Bus, outbox: ChargeOutbox
) -> None:
    # Given a captured charge refunded in part, a refund ePay refused, and a voided charge
    captured = charge(stack, CARD_AUTH)
    refunded = stack.invoke(refund_event(captured["id"], {"amount": 100}, "ok")).body
    stack.simulator.inject("refund", "nonfinal_before_commit")  # not final: PENDING, no event
    pending = stack.invoke(refund_event(captured["id"], {"amount": 100}, "maybe")).body
    refused = stack.invoke(refund_event(captured["id"], {"amount": 5000}, "too-much"))
    assert (refunded["status"], pending["status"], refused.status) == ("SUCCEEDED", "PENDING", 409)
    held = stack.invoke(create_event({**BODY_HELD}, key="held")).body
    voided = stack.invoke(cancel_event(held["id"])).body
    assert voided["status"] == "CANCELLED"
    # When the stream is delivered
    assert outbox.deliver(outbox.records()) == []
    # Then the refund's success and the void are told once each (a pending refund is not)
    ids = {e["id"] for e in bus.received()}
    assert f"charge.refund.succeeded:{refunded['id']}" in ids
    assert f"charge.canceled:{held['id']}:CANCELLED" in ids
    assert not any(pending["id"] in i for i in ids)
    event = next(e for e in bus.received() if e["id"].startswith("charge.refund.succeeded"))
    assert (event["data"]["chargeId"], event["data"]["amount"]) == (captured["id"], 100)
    # And the subscription-less refund changes no subscription (none is on the stream)
    assert not any(i.startswith("subscription.") for i in ids)


BODY_HELD = {
    "amount": 1500.5,
    "currency": "KZT",
    "cardId": CARD_AUTH,
    "accountId": "customer-42",
    "description": "Held",
    "capture": "manual",
}


# ------------------------------------------------------- one batch, few PutEvents calls


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
    assert record["dynamodb"]["NewImage"]["pk"] == {"S": f"CHARGE#{middle['id']}"}
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
        f"charge.failed:{r['dynamodb']['NewImage']['pk']['S'].removeprefix('CHARGE#')}:DECLINED"
        for r in records
        if r["dynamodb"]["SequenceNumber"] in failed
    }
    assert failed_ids == in_first
    # And the eleventh was published
    assert [e["id"] for e in bus.received()] == client.calls[1]
    assert client.calls[1] == [f"charge.failed:{made[-1]['id']}:DECLINED"]
