"""Subscriptions end to end, in-process: the API handler, the dispatcher on its scheduled event and
the worker on real SQS event shapes received from moto's SQS; DynamoDB Local; the simulator;
domain events captured from moto's EventBridge bus through a rule with an SQS target (charge.*
after the table's stream was fed to the charge events function, tests/integration/charge_outbox.py);
and a fake clock that moves through a year in milliseconds."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from local.epay_sim.cards import (
    CARD_3DS,
    CARD_AUTH,
    CARD_CHARGE,
    CARD_INSUFFICIENT_FUNDS,
    CARD_ISSUER_UNAVAILABLE,
    CARD_STOLEN,
)
from payments import bootstrap
from tests.integration.charge_outbox import ChargeOutbox
from tests.integration.conftest import (
    Answer,
    Context,
    Stack,
    at_path,
    item_charge_id,
    load_event,
    load_function,
)
from tests.integration.test_refunds import refund_event

START = datetime(2027, 1, 31, 9, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Subs:
    stack: Stack
    clock: FakeClock
    sqs: Any
    queue_url: str
    queue_arn: str
    capture_url: str
    api: Any
    dispatcher: Any
    worker: Any
    outbox: ChargeOutbox
    seen_events: list[dict[str, Any]] = field(default_factory=list)

    # -- API --
    def call(self, name: str, sub_id: str | None = None, body: Any = None, **kw: Any) -> Answer:
        event = load_event(f"subscriptions/{name}.json")
        event = copy.deepcopy(event)
        if sub_id is not None:
            resource = event["routeKey"].split(" ", 1)[1]
            at_path(event, resource.replace("{subscriptionId}", sub_id), subscriptionId=sub_id)
        if body is not None:
            event["body"] = json.dumps(body)
        if "key" in kw:
            event["headers"]["idempotency-key"] = kw["key"]
        if "query" in kw:
            event["queryStringParameters"] = kw["query"]
        result = self.api.lambda_handler(event, Context())
        raw = result.get("body") or ""
        headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ",".join(values)
        return Answer(result["statusCode"], headers, json.loads(raw) if raw else None, raw)

    def create(self, key: str | None = None, **changes: Any) -> dict[str, Any]:
        body = {
            "accountId": "customer-42",
            "cardId": CARD_AUTH,
            "amount": 4990.00,
            "currency": "KZT",
            "description": "Monthly plan",
            "interval": {"unit": "month", "count": 1},
            "startAt": START.isoformat().replace("+00:00", "Z"),
            **changes,
        }
        answer = self.call("create-subscription", body=body, key=key or uuid.uuid4().hex)
        assert answer.status == 201, answer.body
        return dict(answer.body)

    def get(self, sub_id: str) -> dict[str, Any]:
        answer = self.call("get-subscription", sub_id)
        assert answer.status == 200
        return dict(answer.body)

    # -- dispatcher and worker --
    def dispatch(self) -> dict[str, int]:
        event = load_event("renewal_dispatcher/scheduled.json")
        return dict(self.dispatcher.lambda_handler(event, Context(300)))

    def receive(self) -> list[dict[str, Any]]:
        """Real SQS records (the shape Lambda's event source mapping builds) from moto's SQS."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    k: {"stringValue": v.get("StringValue"), "dataType": v["DataType"]}
                    for k, v in (m.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": self.queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in answer.get("Messages", [])
        ]

    def work(self, records: list[dict[str, Any]], worker: Any = None) -> list[str]:
        """Invoke the worker on records; delete the ones that succeeded (as Lambda does)."""
        result = (worker or self.worker).lambda_handler({"Records": records}, Context(150))
        failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
        for record in records:
            if record["messageId"] not in failed:
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"]
                )
        return failed

    def run(self) -> int:
        """Dispatch, then deliver until the queue is empty; the number of messages handled."""
        self.dispatch()
        handled = 0
        while records := self.receive():
            assert self.work(records) == []
            handled += len(records)
        return handled

    def events(self) -> list[dict[str, Any]]:
        """Every domain event that reached the bus so far (detail: id, type, occurredAt, data)."""
        self.outbox.pump()  # charge.* come from the table's stream
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.capture_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = answer.get("Messages", [])
            if not messages:
                return self.seen_events
            for message in messages:
                envelope = json.loads(message["Body"])
                self.seen_events.append(envelope["detail"])
                self.sqs.delete_message(
                    QueueUrl=self.capture_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def types(self, sub_id: str | None = None) -> list[str]:
        return [
            e["type"]
            for e in self.events()
            if sub_id is None
            or e["data"].get("subscriptionId") == sub_id
            or (e["data"].get("subscription") or {}).get("id") == sub_id
        ]

    def charges(self) -> list[dict[str, Any]]:
        """The charge items, each value unwrapped, with the id their key holds."""
        return [
            {"id": item_charge_id(i), **{k: next(iter(v.values())) for k, v in i.items()}}
            for i in self.stack.charge_items()
        ]


@pytest.fixture
def subs(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, dynamodb_endpoint: str
) -> Iterator[Subs]:
    names = stack.resource_names or {}
    client = {
        "endpoint_url": moto_endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sqs, events = boto3.client("sqs", **client), boto3.client("events", **client)
    # Given the bus's events routed to a capture queue by a rule, as a consumer would
    capture_url = sqs.create_queue(QueueName=f"capture-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    capture_arn = sqs.get_queue_attributes(QueueUrl=capture_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    bus = names["PaymentsBus"]
    rule = f"capture-{uuid.uuid4().hex[:12]}"
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["payments"]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": capture_arn}])
    for key, value in {
        "AWS_ENDPOINT_URL_SQS": moto_endpoint,
        "AWS_ENDPOINT_URL_EVENTBRIDGE": moto_endpoint,
        "EVENT_BUS_NAME": bus,
        "RENEWAL_QUEUE_URL": names["RenewalQueue"],
        "RENEWAL_RETRY_LADDER": "1d,3d,5d",
        "RENEWAL_FINAL_ACTION": "unpaid",
    }.items():
        monkeypatch.setenv(key, value)
    bootstrap.reset()
    clock = FakeClock()
    bootstrap.use_clock(clock)
    yield Subs(
        stack=stack,
        clock=clock,
        sqs=sqs,
        queue_url=names["RenewalQueue"],
        queue_arn=names["RenewalQueue.Arn"],
        capture_url=capture_url,
        api=load_function("subscriptions"),
        dispatcher=load_function("renewal_dispatcher"),
        worker=load_function("renewal_worker"),
        outbox=ChargeOutbox(stack.dynamodb, dynamodb_endpoint, stack.table),
    )
    events.remove_targets(Rule=rule, EventBusName=bus, Ids=["q"])
    events.delete_rule(Name=rule, EventBusName=bus)
    bootstrap.reset()


# ------------------------------------------------------------------------------------------ API


def test_create_get_list_and_replay(subs: Subs) -> None:
    # When a subscription is created anchored on 31 January
    created = subs.create(key="plan-1")
    # Then it is ACTIVE, masked, and its periods are month-end aware
    assert created["status"] == "ACTIVE"
    assert created["cardId"] == "****0001"
    assert created["currentPeriodStart"] == "2027-01-31T09:00:00.000Z"
    assert created["currentPeriodEnd"] == "2027-02-28T09:00:00.000Z"
    assert created["nextChargeAt"] == "2027-01-31T09:00:00.000Z"
    # And the same key and body replay it; a different body is refused
    again = subs.call(
        "create-subscription",
        body={
            "accountId": "customer-42",
            "cardId": CARD_AUTH,
            "amount": 4990.00,
            "currency": "KZT",
            "description": "Monthly plan",
            "interval": {"unit": "month", "count": 1},
            "startAt": "2027-01-31T09:00:00Z",
        },
        key="plan-1",
    )
    assert again.status == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.body["id"] == created["id"]
    other = subs.call(
        "create-subscription",
        body={
            "accountId": "customer-42",
            "cardId": CARD_AUTH,
            "amount": 1.00,
            "currency": "KZT",
            "description": "Monthly plan",
            "interval": {"unit": "month", "count": 1},
        },
        key="plan-1",
    )
    assert other.status == 422
    # And GET and the paginated list show it
    assert subs.get(created["id"])["id"] == created["id"]
    subs.clock.now += timedelta(seconds=1)  # listed oldest first (then by id)
    second = subs.create()
    page = subs.call("list-subscriptions", query={"accountId": "customer-42", "limit": "1"})
    assert page.status == 200
    assert [s["id"] for s in page.body["items"]] == [created["id"]]
    rest = subs.call(
        "list-subscriptions",
        query={"accountId": "customer-42", "limit": "1", "cursor": page.body["nextCursor"]},
    )
    assert [s["id"] for s in rest.body["items"]] == [second["id"]]
    assert subs.call("get-subscription", "sub_" + "0" * 32).status == 404


def test_validation_is_strict_and_writes_nothing(subs: Subs) -> None:
    before = len(subs.stack.items())
    answer = subs.call(
        "create-subscription",
        body={
            "accountId": "",
            "cardId": "x",
            "amount": 10.001,
            "currency": "XXX",
            "description": "д" * 63,
            "interval": {"unit": "fortnight"},
            "startAt": "2027-01-31T09:00:00",
            "extra": 1,
        },
        key="bad-1",
    )
    assert answer.status == 400
    assert set(answer.body["error"]["fields"]) == {
        "accountId",
        "cardId",
        "amount",
        "currency",
        "description",
        "interval",
        "startAt",
        "extra",
    }
    assert subs.call("create-subscription", body={}, key=None).status == 400
    assert subs.call("get-subscription", "sub_missing").status == 404
    assert subs.call("list-subscriptions", query={}).status == 400
    assert len(subs.stack.items()) == before


# -------------------------------------------------------------------------------- a year of it


SOFT_DECLINE_CYCLE = 3  # insufficient funds, then the retry ladder
HARD_DECLINE_CYCLE = 7  # a stolen card: nothing is retried until a new card is given


def test_a_year_of_monthly_renewals_with_declines_on_chosen_cycles(subs: Subs) -> None:
    # Given a monthly subscription anchored on 31 January 2027, 09:00 UTC
    sub = subs.create(key="year")
    sub_id = sub["id"]
    due = [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30",
        "2027-07-31", "2027-08-31", "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31",
    ]  # fmt: skip
    # When each cycle falls due, a soft decline on cycle 3 and a hard one on cycle 7
    for cycle, day in enumerate(due):
        moment = datetime.fromisoformat(f"{day}T09:00:00+00:00")
        renew_the_cycle_when_due(subs, sub_id, cycle, moment)
    # Then twelve cycles were paid, month ends clamped and anchored on the 31st
    assert_twelve_cycles_paid_besides_three_declines(subs, sub_id)
    # And every fact was told exactly once
    assert_each_fact_of_the_year_told_once(subs, sub_id)


def renew_the_cycle_when_due(subs: Subs, sub_id: str, cycle: int, moment: datetime) -> None:
    """Run the dispatcher a second before and at `moment`; the chosen cycles decline first."""
    # A second before the cycle is due, nothing is dispatched
    subs.clock.now = moment - timedelta(seconds=1)
    assert subs.run() == 0, cycle
    if cycle == SOFT_DECLINE_CYCLE:
        subs.call("update-subscription", sub_id, {"cardId": CARD_INSUFFICIENT_FUNDS})
    if cycle == HARD_DECLINE_CYCLE:
        subs.call("update-subscription", sub_id, {"cardId": CARD_STOLEN})
    subs.clock.now = moment
    assert subs.run() == 1, cycle
    state = subs.get(sub_id)
    if cycle == SOFT_DECLINE_CYCLE:
        soft_decline_is_retried_then_paid_with_a_new_card(subs, sub_id, moment, state)
    if cycle == HARD_DECLINE_CYCLE:
        hard_decline_waits_for_a_new_card(subs, sub_id, moment, state)
    state = subs.get(sub_id)
    assert state["status"] == "ACTIVE", cycle
    assert state["currentCycle"] == cycle + 1


def soft_decline_is_retried_then_paid_with_a_new_card(
    subs: Subs, sub_id: str, moment: datetime, state: dict[str, Any]
) -> None:
    # Then the cycle is retried a day later, declined again, then paid with a new card
    assert state["status"] == "PAST_DUE"
    assert state["pastDueReason"] == "retrying"
    retry_at = (moment + timedelta(days=1)).isoformat().replace("+00:00", ".000Z")
    assert state["nextChargeAt"] == retry_at
    subs.clock.now = moment + timedelta(days=1)
    assert subs.run() == 1
    assert subs.get(sub_id)["status"] == "PAST_DUE"
    subs.call("update-subscription", sub_id, {"cardId": CARD_AUTH})
    subs.clock.now = moment + timedelta(days=4)
    assert subs.run() == 1


def hard_decline_waits_for_a_new_card(
    subs: Subs, sub_id: str, moment: datetime, state: dict[str, Any]
) -> None:
    # Then it is PAST_DUE needing a new card, nothing is retried until one is given
    assert state["status"] == "PAST_DUE"
    assert state["pastDueReason"] == "card_required"
    assert state["nextChargeAt"] is None
    subs.clock.now = moment + timedelta(days=10)
    assert subs.run() == 0
    subs.call("update-subscription", sub_id, {"cardId": CARD_AUTH})
    assert subs.run() == 1


def assert_twelve_cycles_paid_besides_three_declines(subs: Subs, sub_id: str) -> None:
    final = subs.get(sub_id)
    assert final["paidCycles"] == 12
    assert final["currentPeriodStart"] == "2028-01-31T09:00:00.000Z"
    charges = subs.charges()
    captured = [c for c in charges if c["status"] == "CAPTURED"]
    assert len(captured) == 12
    assert all(c["recurrent"] for c in charges)
    assert {c["status"] for c in charges} == {"CAPTURED", "DECLINED"}
    assert len(charges) == 12 + 2 + 1  # two soft declines on cycle 3, one hard on cycle 7
    # And ePay saw one auth per charge, never two for an invoice
    assert len(subs.stack.auths()) == len(charges)


def assert_each_fact_of_the_year_told_once(subs: Subs, sub_id: str) -> None:
    events = subs.events()
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))
    types = subs.types(sub_id)
    assert types.count("subscription.renewed") == 12
    assert types.count("charge.succeeded") == 12
    assert types.count("charge.failed") == 3
    assert types.count("subscription.past_due") == 3
    # And each renewal names its cycle and its clamped period
    renewed = [e for e in events if e["type"] == "subscription.renewed"]
    assert [e["data"]["cycle"] for e in renewed] == list(range(12))
    assert renewed[1]["data"]["periodStart"] == "2027-02-28T09:00:00.000Z"
    assert renewed[1]["data"]["periodEnd"] == "2027-03-31T09:00:00.000Z"
    # And the hard decline's past_due asks for a card and names ePay's code
    hard = [e for e in events if e["type"] == "subscription.past_due"][-1]
    assert hard["data"]["reason"] == "card_required"
    assert hard["data"]["declineCode"] == "483"
    # And charge.succeeded has a deterministic id, names its cycle and masks the card
    succeeded = next(e for e in events if e["type"] == "charge.succeeded")
    assert succeeded["id"] == f"charge.succeeded:{succeeded['data']['chargeId']}:CAPTURED"
    assert succeeded["data"]["subscription"] == {"id": sub_id, "cycle": 0, "attempt": 0}
    assert succeeded["data"]["cardId"] == "****0001"


def test_the_ladder_ends_in_unpaid(subs: Subs) -> None:
    sub_id = subs.create(cardId=CARD_ISSUER_UNAVAILABLE)["id"]
    for days in (0, 1, 4, 9):  # the first attempt, then +1d, +3d, +5d
        subs.clock.now = START + timedelta(days=days)
        assert subs.run() == 1, days
    state = subs.get(sub_id)
    assert state["status"] == "UNPAID"
    assert state["pastDueReason"] == "retries_exhausted"
    subs.clock.now = START + timedelta(days=60)
    assert subs.run() == 0
    past_due = [e for e in subs.events() if e["type"] == "subscription.past_due"]
    assert [e["data"]["reason"] for e in past_due] == ["retrying"] * 3 + ["retries_exhausted"]


def test_three_d_secure_marks_the_cycle_for_the_customer(subs: Subs) -> None:
    sub_id = subs.create(cardId=CARD_3DS)["id"]
    assert subs.run() == 1
    # Then the cycle waits for the customer; the event carries the 3DS page's URL
    (event,) = [e for e in subs.events() if e["type"] == "charge.requires_action"]
    assert event["data"]["nextAction"]["type"] == "redirect"
    assert "/3ds?token=" in event["data"]["nextAction"]["url"]
    assert event["data"]["subscription"]["id"] == sub_id
    state = subs.get(sub_id)
    assert state["status"] == "ACTIVE"
    assert state["currentCycle"] == 0
    # And a re-check later replays the same charge: no second auth
    subs.clock.now = START + timedelta(minutes=16)
    assert subs.run() == 1
    assert len(subs.stack.auths()) == 1
    assert subs.types(sub_id) == ["charge.requires_action"]


# ----------------------------------------------------------------------------------- duplicates


def test_dispatching_twice_or_concurrently_enqueues_each_cycle_once(subs: Subs) -> None:
    ids = [subs.create()["id"] for _ in range(6)]
    # When two dispatchers run at once, then a third after them
    other = load_function("renewal_dispatcher")
    results: list[dict[str, int]] = []
    threads = [
        threading.Thread(target=lambda d=d: results.append(d.lambda_handler(
            load_event("renewal_dispatcher/scheduled.json"), Context(300)
        )))
        for d in (subs.dispatcher, other)
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["enqueued"] for r in results) == 6
    assert subs.dispatch()["enqueued"] == 0
    # Then the queue holds exactly one message per subscription
    bodies = []
    while records := subs.receive():
        bodies += [json.loads(r["body"]) for r in records]
        subs.work(records)
    assert sorted(b["subscriptionId"] for b in bodies) == sorted(ids)
    assert {b["key"] for b in bodies} == {f"{i}#0" for i in ids}
    assert len(subs.charges()) == 6


def test_redelivery_three_times_and_two_workers_at_once_give_one_charge(subs: Subs) -> None:
    sub_id = subs.create()["id"]
    subs.dispatch()
    (record,) = subs.receive()
    # When SQS delivers the same message three times
    for _ in range(3):
        assert subs.work([record]) == []
    # And two workers get it at the same moment
    second = subs.create()["id"]
    subs.dispatch()
    (record2,) = subs.receive()
    other = load_function("renewal_worker")
    failures: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda w=w: failures.append(subs.work([record2], w)))
        for w in (subs.worker, other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each cycle has one charge, one auth, one renewal, one of each event
    assert len(subs.charges()) == 2
    assert len(subs.stack.auths()) == 2
    assert subs.get(sub_id)["paidCycles"] == 1
    # (a worker that found the charge in flight failed its record; a redelivery settles it)
    if any(failures):
        assert subs.work([record2]) == []
    assert subs.get(second)["paidCycles"] == 1
    for sid in (sub_id, second):
        assert sorted(subs.types(sid)) == ["charge.succeeded", "subscription.renewed"]


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_pause_or_cancel_between_dispatch_and_charge_charges_nothing(
    subs: Subs, action: str
) -> None:
    sub_id = subs.create()["id"]
    subs.dispatch()
    records = subs.receive()
    # When the merchant pauses or cancels after the cycle was enqueued
    assert subs.call(f"{action}-subscription", sub_id).status == 200
    assert subs.work(records) == []
    # Then nothing is charged
    assert subs.charges() == []
    state = subs.get(sub_id)
    assert state["status"] == ("PAUSED" if action == "pause" else "CANCELLED")
    assert state["nextChargeAt"] is None
    assert subs.run() == 0
    if action == "cancel":
        assert subs.types(sub_id) == ["subscription.canceled"]
        assert subs.call("cancel-subscription", sub_id).status == 200  # repeatable, no event
        assert subs.types(sub_id) == ["subscription.canceled"]
        return
    # And a resume within the same period charges that cycle, once
    assert subs.call("resume-subscription", sub_id).body["status"] == "ACTIVE"
    assert subs.run() == 1
    assert subs.get(sub_id)["paidCycles"] == 1
    # (charge.* come from the stream, so the two sources' order on the bus is not fixed)
    assert sorted(subs.types(sub_id)) == ["charge.succeeded", "subscription.renewed"]


def test_resume_after_whole_periods_skips_them(subs: Subs) -> None:
    sub_id = subs.create()["id"]
    assert subs.run() == 1  # cycle 0 paid
    subs.call("pause-subscription", sub_id)
    subs.clock.now = datetime(2027, 5, 15, tzinfo=UTC)  # Feb, Mar periods ended; Apr 30 is current
    resumed = subs.call("resume-subscription", sub_id).body
    assert resumed["currentCycle"] == 3
    assert resumed["currentPeriodStart"] == "2027-04-30T09:00:00.000Z"
    assert subs.run() == 1
    assert subs.get(sub_id)["paidCycles"] == 2


def test_amount_change_applies_from_the_next_cycle(subs: Subs) -> None:
    sub_id = subs.create()["id"]
    subs.dispatch()  # cycle 0 is due and enqueued
    changed = subs.call("update-subscription", sub_id, {"amount": 5990.00}).body
    assert changed["amount"] == 4990.00
    assert changed["nextAmount"] == 5990.00
    while records := subs.receive():
        subs.work(records)
    subs.clock.now = datetime(2027, 2, 28, 9, tzinfo=UTC)
    assert subs.run() == 1
    amounts = sorted(c["amount"] for c in subs.charges())
    assert [str(a) for a in amounts] == ["4990", "5990"]


def test_canonical_worker_event_stale_and_malformed_records(subs: Subs) -> None:
    # Given the canonical SQS event for a subscription that does not exist, plus a broken record
    event = load_event("renewal_worker/sqs-renewal.json")
    broken = {**event["Records"][0], "messageId": "broken-1", "body": "{not json"}
    event["Records"].append(broken)
    # When the worker handles the batch
    result = subs.worker.lambda_handler(event, Context(150))
    # Then the stale one is acknowledged (nothing to charge) and only the broken one is retried
    # (and, after five receives, lands in the DLQ)
    assert result == {"batchItemFailures": [{"itemIdentifier": "broken-1"}]}
    assert subs.charges() == []


def test_refunding_a_renewal_charge_leaves_the_subscription_as_it_was(subs: Subs) -> None:
    # Given a subscription whose first cycle was charged by a renewal
    sub_id = subs.create()["id"]
    subs.dispatch()
    (record,) = subs.receive()
    assert subs.work([record]) == []
    before = subs.get(sub_id)
    (renewal,) = subs.charges()
    assert renewal["status"] == "CAPTURED"
    # When the merchant refunds that charge in full
    answer = subs.stack.invoke(refund_event(str(renewal["id"]), None, "refund-renewal"))
    assert (answer.status, answer.body["status"]) == (201, "SUCCEEDED")
    # Then the subscription is unchanged (status, paid cycles, next billing), and the stream
    # tells of the refund but of no subscription change
    assert subs.get(sub_id) == before
    assert subs.outbox.deliver(subs.outbox.records()) == []
    assert "charge.refund.succeeded" in subs.types()
    assert sorted(subs.types(sub_id)) == ["charge.succeeded", "subscription.renewed"]


# ------------------------------------------------------------------------- a removed card


def card_call(subs: Subs, name: str, card_id: str | None = None, **query: str) -> Answer:
    """The cards function on its canonical events (account customer-42)."""
    event = load_event(f"cards/{name}.json")
    if card_id is not None:
        at_path(
            event,
            f"/accounts/customer-42/cards/{card_id}",
            accountId="customer-42",
            cardId=card_id,
        )
    event["queryStringParameters"] = query or None
    handler = load_function("cards").lambda_handler
    return Stack(subs.stack.table, subs.stack.dynamodb, subs.stack.simulator, handler).invoke(event)


def test_a_removed_card_is_told_to_its_subscription_and_fails_its_renewal_safely(
    subs: Subs,
) -> None:
    # Given a subscription whose first cycle is paid, on a card the service knows (ePay's list)
    assert card_call(subs, "list-cards", refresh="true").status == 200
    sub_id = subs.create()["id"]
    subs.clock.now = START
    assert subs.run() == 1
    # When the merchant removes the card
    removed = card_call(subs, "remove-card", CARD_AUTH)
    assert (removed.status, removed.body["status"]) == (200, "REMOVED")
    # Then the stream tells card.removed, and the subscription that still charges it is told
    events = subs.events()
    assert "card.removed" in [e["type"] for e in events]
    (told,) = [e for e in events if e["type"] == "subscription.payment_method_removed"]
    assert told["data"]["subscriptionId"] == sub_id
    assert told["data"]["reason"] == "card_removed"
    assert subs.get(sub_id)["status"] == "ACTIVE"  # not cancelled silently

    # When the next cycle is due
    auths = len(subs.stack.auths())
    subs.clock.now = START + timedelta(days=29)
    assert subs.run() == 1
    # Then it fails safe as a hard decline with a clear code, without calling ePay
    state = subs.get(sub_id)
    assert (state["status"], state["pastDueReason"]) == ("PAST_DUE", "card_required")
    assert len(subs.stack.auths()) == auths
    past_due = [e for e in subs.events() if e["type"] == "subscription.past_due"]
    assert past_due[-1]["data"]["declineCode"] == "card_removed"

    # And the removed card cannot be set again, nor start a new subscription
    again = subs.call("update-subscription", sub_id, {"cardId": CARD_AUTH})
    assert (again.status, again.body["error"]["code"]) == (409, "card_removed")
    body = {
        "accountId": "customer-42",
        "cardId": CARD_AUTH,
        "amount": 10,
        "currency": "KZT",
        "description": "Plan",
        "interval": {"unit": "month", "count": 1},
    }
    fresh = subs.call("create-subscription", body=body, key="on-removed-card")
    assert (fresh.status, fresh.body["error"]["code"]) == (409, "card_removed")
    # But another card of the account is taken, and the cycle is paid with it
    assert subs.call("update-subscription", sub_id, {"cardId": CARD_CHARGE}).status == 200
    assert subs.run() == 1
    assert subs.get(sub_id)["status"] == "ACTIVE"
