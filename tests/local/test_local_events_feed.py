"""`make run` shows the bus: every domain event that went through the local EventBridge bus is
printed as one line and served, local only, at GET /_local/events (local.events_feed)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import urllib3
from moto import mock_aws

from local.events_feed import EVENTS_PATH, EventsFeed, summary_line
from local.run import APPROVED_TEST_CARD_ID, REPO_ROOT, banner, start_stack

CHARGE_DATA = {
    "chargeId": "ch_0123",
    "invoiceId": "000000007",
    "status": "CAPTURED",
    "amount": 1500.0,
    "currency": "KZT",
    "accountId": "customer-42",
    "cardId": "****0001",
    "nextAction": {"type": "redirect", "url": "http://x/charges/ch_0123/3ds?token=s3cr3t"},
    "error": None,
    "subscription": None,
}


def _event(kind: str, data: dict[str, Any], event_id: str = "e-1") -> dict[str, Any]:
    return {"id": event_id, "type": kind, "occurredAt": "2026-01-01T00:00:00.000Z", "data": data}


def test_the_console_line_is_one_readable_line_without_card_ids_or_secrets() -> None:
    charge = summary_line(_event("charge.succeeded", CHARGE_DATA))
    assert charge == "event charge.succeeded ch_0123 CAPTURED 1500.00 KZT customer-42"
    declined = summary_line(
        _event(
            "charge.failed",
            {**CHARGE_DATA, "status": "DECLINED", "amount": 990, "error": {"code": "484"}},
        )
    )
    assert declined == "event charge.failed ch_0123 DECLINED 990.00 KZT customer-42 error=484"
    card_id = "c0000000-0000-4000-8000-000000000001"
    card = summary_line(
        _event("card.saved", {"id": card_id, "accountId": "acc-1", "status": "ACTIVE"})
    )
    assert card == "event card.saved card ****0001 ACTIVE acc-1"
    refund = summary_line(
        _event(
            "charge.refund.succeeded",
            {
                "id": "re_1",
                "chargeId": "ch_0123",
                "status": "SUCCEEDED",
                "amount": 500.0,
                "currency": "KZT",
            },
        )
    )
    assert refund == "event charge.refund.succeeded re_1 SUCCEEDED 500.00 KZT charge ch_0123"
    renewed = summary_line(
        _event(
            "subscription.renewed",
            {
                "subscriptionId": "sub_1",
                "status": "ACTIVE",
                "amount": 4990.0,
                "currency": "KZT",
                "accountId": "customer-42",
                "cycle": 1,
                "chargeId": "ch_9",
            },
        )
    )
    assert renewed == "event subscription.renewed sub_1 ACTIVE 4990.00 KZT customer-42 cycle 1"
    # A merchant's text cannot break the line (or forge another one)
    forged = summary_line(
        _event("charge.succeeded", {**CHARGE_DATA, "accountId": "a\nevent charge.succeeded x"})
    )
    assert "\n" not in forged
    assert forged.endswith('"a\\nevent charge.succeeded x"')
    for line in (charge, card, declined):
        assert card_id not in line
        assert "s3cr3t" not in line
        assert "token" not in line


@mock_aws
def test_the_feed_keeps_the_last_events_and_filters_by_type() -> None:
    # Given a feed holding at most three events
    aws = {"region_name": "us-east-1"}
    printed: list[str] = []
    feed = EventsFeed(
        boto3.client("events", **aws),
        boto3.client("sqs", **aws),
        [],
        capacity=3,
        echo=printed.append,
    )
    # When five arrive
    for n in range(5):
        kind = "card.saved" if n == 3 else "charge.succeeded"
        feed.add(_event(kind, {**CHARGE_DATA, "chargeId": f"ch_{n}"}, f"e-{n}"))
    # Then the last three are kept, oldest first, each printed once
    assert [e["id"] for e in feed.events()] == ["e-2", "e-3", "e-4"]
    assert len(printed) == 5
    assert [e["id"] for e in feed.events(["card.saved"])] == ["e-3"]
    assert [e["id"] for e in feed.events(["charge.*"])] == ["e-2", "e-4"]
    # And the endpoint answers the same as JSON, GET only
    answer = feed.endpoint("GET", "type=charge.succeeded")
    assert answer.status == 200
    body = json.loads(answer.body)
    assert [e["id"] for e in body["data"]] == ["e-2", "e-4"]
    assert set(body["data"][0]) == {"id", "type", "occurredAt", "data"}
    assert feed.endpoint("POST", "").status == 403


@mock_aws
def test_the_feed_reads_what_went_through_the_bus_and_cleans_up() -> None:
    # Given a bus and a feed on it (moto delivers the rule's matches to the feed's queue)
    aws = {"region_name": "us-east-1"}
    events, sqs = boto3.client("events", **aws), boto3.client("sqs", **aws)
    events.create_event_bus(Name="bus")
    printed: list[str] = []
    feed = EventsFeed(events, sqs, ["bus"], echo=printed.append).start(drain=False)
    try:
        # When the publisher puts a domain event and something else on the bus
        detail = _event("charge.succeeded", CHARGE_DATA, "charge.succeeded:ch_0123:CAPTURED")
        events.put_events(
            Entries=[
                {
                    "Source": "payments",
                    "DetailType": "charge.succeeded",
                    "Detail": json.dumps(detail),
                    "EventBusName": "bus",
                },
                {
                    "Source": "other",
                    "DetailType": "inventory.changed",
                    "Detail": "{}",
                    "EventBusName": "bus",
                },
            ]
        )
        feed.drain_once(0)
        # Then only the domain event is kept and printed
        assert [e["id"] for e in feed.events()] == ["charge.succeeded:ch_0123:CAPTURED"]
        assert printed == ["event charge.succeeded ch_0123 CAPTURED 1500.00 KZT customer-42"]
    finally:
        feed.stop()
    # And stopping removed its rule and queue
    assert events.list_rules(EventBusName="bus")["Rules"] == []
    assert sqs.list_queues().get("QueueUrls", []) == []


def test_a_charge_through_the_local_api_shows_up_in_the_feed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="local.events")
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=20))
    with start_stack(0, environ={}, dynamodb="auto") as stack:
        # When a charge is created over HTTP
        created = http.request(
            "POST",
            f"{stack.url}/charges",
            body=json.dumps(
                {
                    "amount": 1500.00,
                    "currency": "KZT",
                    "cardId": APPROVED_TEST_CARD_ID,
                    "accountId": "customer-42",
                    "description": "Order 42",
                }
            ),
            headers={"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
        )
        assert created.status == 201, created.data
        charge_id = json.loads(created.data)["id"]
        # Then its charge.succeeded (and the card's card.saved) come through the bus to the feed
        wanted = f"charge.succeeded:{charge_id}:CAPTURED"
        feed: list[dict[str, Any]] = []
        for _ in range(80):
            answer = http.request("GET", f"{stack.url}{EVENTS_PATH}")
            assert answer.status == 200
            feed = json.loads(answer.data)["data"]
            if wanted in [e["id"] for e in feed] and "card.saved" in [e["type"] for e in feed]:
                break
            time.sleep(0.25)
        ids = [e["id"] for e in feed]
        assert wanted in ids, ids
        (succeeded,) = [e for e in feed if e["id"] == wanted]
        assert set(succeeded) == {"id", "type", "occurredAt", "data"}
        assert succeeded["type"] == "charge.succeeded"
        assert succeeded["data"]["chargeId"] == charge_id
        assert succeeded["data"]["status"] == "CAPTURED"
        # And ?type= keeps that type only
        only = json.loads(http.request("GET", f"{stack.url}{EVENTS_PATH}?type=card.saved").data)[
            "data"
        ]
        assert only
        assert {e["type"] for e in only} == {"card.saved"}
        time.sleep(1.5)  # a later drain must not print it again
        lines = [r.getMessage() for r in caplog.records if r.name == "local.events"]

    # And it was printed once, as one line, with no card id unmasked
    mine = [line for line in lines if charge_id in line]
    assert mine == [f"event charge.succeeded {charge_id} CAPTURED 1500.00 KZT customer-42"]
    assert all("\n" not in line and APPROVED_TEST_CARD_ID not in line for line in lines)
    assert "event card.saved card ****0001 ACTIVE customer-42" in lines


def test_the_banner_tells_where_the_feed_is() -> None:
    stack = SimpleNamespace(
        url="http://127.0.0.1:3000",
        epay_oauth_url="-",
        epay_api_url="-",
        aws_endpoint="-",
        dynamodb_endpoint="-",
        env={},
        simulator=None,
        gateway=SimpleNamespace(docs=None),
        events=object(),
    )
    text = banner(stack)  # type: ignore[arg-type]
    assert "http://127.0.0.1:3000/_local/events" in text


def test_the_feed_is_local_only() -> None:
    # The route and the rule are not the template's: a deployed stack has neither
    template = (REPO_ROOT / "template.yaml").read_text()
    assert "_local" not in template
    assert "events-feed" not in template
