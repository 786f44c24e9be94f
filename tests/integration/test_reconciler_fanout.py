"""The reconciler's fan-out on DynamoDB Local, moto's SQS FIFO queue and the ePay simulator: the
schedule's tick enqueues one unit per due shard (once per tick), each unit's run settles its
shard only with one read of each charge, and two runs racing on a shard capture each charge once."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from botocore.httpsession import URLLib3Session

from local.workers import sqs_records
from payments import bootstrap
from payments.shared.deadline import Deadline
from tests.integration.conftest import (
    Context,
    Stack,
    aws_client,
    create_event,
    load_event,
    load_function,
)

BODY: dict[str, Any] = {
    "amount": 400,
    "currency": "KZT",
    "cardId": "c0000000-0000-4000-8000-000000000001",
    "accountId": "customer-16",
    "description": "Order 16",
}


@dataclass
class FanOut:
    stack: Stack
    sqs: Any
    queue_url: str
    queue_arn: str
    handler: Any

    def unknown_charges(self, shards: list[int]) -> dict[str, int]:
        """One UNKNOWN charge (ePay took the auth, its answer broke) per entry, due now, put in
        that shard of DueIndex; {charge id: shard}."""
        self.stack.simulator.inject("auth", "broken_body", count=len(shards))
        made = {}
        for n, shard in enumerate(shards):
            charge = self.stack.invoke(create_event(BODY, f"fan-{n}")).body
            assert charge["status"] == "UNKNOWN"
            self.stack.dynamodb.update_item(
                TableName=self.stack.table,
                Key={"pk": {"S": f"CHARGE#{charge['id']}"}, "sk": {"S": "CHARGE"}},
                UpdateExpression="SET nextCheckAt = :past, dueShard = :shard",
                ExpressionAttributeValues={
                    ":past": {"S": "2000-01-01T00:00:00.000Z"},
                    ":shard": {"S": f"DUE#{shard}"},
                },
            )
            made[charge["id"]] = shard
        return made

    def tick(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.handler(
            load_event("reconciler/scheduled.json"), Context(120)
        )
        return summary

    def received(self) -> list[dict[str, Any]]:
        """Every message the queue hands out now (each group's first)."""
        messages: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            )
            if not answer.get("Messages"):
                return messages
            messages.extend(answer["Messages"])

    def deliver(self, message: dict[str, Any]) -> dict[str, Any]:
        event = {"Records": sqs_records([message], self.queue_arn)}
        result: dict[str, Any] = self.handler(event, Context(120))
        return result

    def status(self, charge_id: str) -> str:
        item = self.stack.dynamodb.get_item(
            TableName=self.stack.table,
            Key={"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}},
            ConsistentRead=True,
        )["Item"]
        return str(item["status"]["S"])


@pytest.fixture
def fan(stack: Stack, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> FanOut:
    names = stack.resource_names
    assert names is not None
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("RECONCILE_QUEUE_URL", names["ReconcileQueue"])
    monkeypatch.setenv("RECONCILER_THREADS", "4")
    bootstrap.reset()
    return FanOut(
        stack,
        aws_client("sqs", moto_endpoint),
        names["ReconcileQueue"],
        names["ReconcileQueue.Arn"],
        load_function("reconciler").lambda_handler,
    )


@contextmanager
def dynamodb_requests() -> Iterator[Counter[str]]:
    """DynamoDB requests this process sends, by operation (a GetItem also by its key's kind,
    e.g. "GetItem CHARGE"), counted where botocore sends them."""
    counts: Counter[str] = Counter()
    send = URLLib3Session.send

    def counted(session: Any, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target") or b""
        name = target.decode() if isinstance(target, bytes) else str(target)
        if name.startswith("DynamoDB_"):
            operation = name.split(".", 1)[1]
            counts[operation] += 1
            if operation == "GetItem":
                key = json.loads(request.body)["Key"]["pk"]["S"]
                counts[f"GetItem {key.split('#', 1)[0]}"] += 1
        return send(session, request)

    with mock.patch.object(URLLib3Session, "send", counted):
        yield counts


def test_the_tick_enqueues_one_unit_per_due_shard_once(fan: FanOut) -> None:
    # Given due charges in shards 0 (three of them) and 7 (one)
    fan.unknown_charges([0, 0, 0, 7])

    # When the schedule ticks, and the same tick is delivered again
    first = fan.tick()
    again = fan.tick()

    # Then it probed every shard and sent one unit for each due shard, in its own FIFO group
    assert first == {"enqueued": 2, "probed": 14}
    assert again == {"enqueued": 2, "probed": 14}
    messages = fan.received()
    groups = sorted(m["Attributes"]["MessageGroupId"] for m in messages)
    # And the repeated tick's units were dropped as duplicates
    assert groups == ["charges-0", "charges-7"]


def test_each_unit_settles_its_shard_only_with_one_read_per_charge(fan: FanOut) -> None:
    # Given due charges in shards 0 (three), 3 (one) and 7 (two), and their units on the queue
    charges = fan.unknown_charges([0, 0, 0, 3, 7, 7])
    fan.tick()
    units = {m["Attributes"]["MessageGroupId"]: m for m in fan.received()}
    assert set(units) == {"charges-0", "charges-3", "charges-7"}

    # When shard 0's unit runs
    with dynamodb_requests() as sent:
        result = fan.deliver(units["charges-0"])

    # Then shard 0's charges are settled (auto captured) and no other shard's
    assert result == {"batchItemFailures": []}
    settled = {charge_id: fan.status(charge_id) for charge_id in charges}
    assert {c for c, s in settled.items() if s == "CAPTURED"} == {
        c for c, shard in charges.items() if shard == 0
    }
    # And each of its charges was read once (GetItem), its shard listed by queries only (the
    # other reads, if any: the terminal's code, learned once per container)
    assert sent["GetItem CHARGE"] == 3
    assert sent["GetItem"] == sent["GetItem CHARGE"] + sent["GetItem TERMINAL"]
    assert "BatchGetItem" not in sent
    assert sent["Query"] <= 2

    # When the other units run
    for group in ("charges-3", "charges-7"):
        assert fan.deliver(units[group]) == {"batchItemFailures": []}

    # Then every charge is settled, each auth sent once
    assert {fan.status(charge_id) for charge_id in charges} == {"CAPTURED"}
    assert len(fan.stack.auths()) == len(charges)


def test_two_runs_racing_on_one_shard_capture_each_charge_once(fan: FanOut) -> None:
    # Given eight due charges in shard 5 that ePay authorised (their answers lost)
    charges = fan.unknown_charges([5] * 8)

    # When two runs of shard 5 (two invocations) go at once, four checks each at a time
    reconciler = bootstrap.reconciler()
    runs = [
        threading.Thread(target=reconciler.run_shard, args=(5, Deadline.after(60)))
        for _ in range(2)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join()

    # Then each is captured, by one capture at ePay and one CAPTURED write in its history
    assert {fan.status(charge_id) for charge_id in charges} == {"CAPTURED"}
    captures = [e for e in fan.stack.simulator.journal if e.path.endswith("/charge")]
    assert len(captures) == len(charges)
    store = bootstrap.store()
    for charge_id in charges:
        history = [entry.to_status.value for entry in store.history(charge_id)]
        assert history.count("CAPTURED") == 1, history


def test_the_canonical_unit_event_runs_its_shard(fan: FanOut) -> None:
    # Given a due charge in shard 3 and one in shard 4
    in_3, in_4 = fan.unknown_charges([3, 4])

    # When the canonical queue event (a unit: charges, shard 3) reaches the function
    result = fan.handler(load_event("reconciler/sqs-shard-unit.json"), Context(120))

    # Then shard 3's charge is settled and shard 4's waits for its own unit
    assert result == {"batchItemFailures": []}
    assert (fan.status(in_3), fan.status(in_4)) == ("CAPTURED", "UNKNOWN")


def test_a_malformed_unit_fails_alone(fan: FanOut) -> None:
    # Given a message that is no unit
    event = load_event("reconciler/sqs-shard-unit.json")
    event["Records"][0]["body"] = '{"kind": "coupons"}'

    # When it reaches the function / Then only it is reported failed (SQS delivers it again,
    # then moves it to the dead-letter queue)
    result = fan.handler(event, Context(120))
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
