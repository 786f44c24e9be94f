"""`make run` publishes charge.* from the table's stream: the local poller reads DynamoDB Local's
stream (LATEST at start) and invokes the charge events handler, whose events reach the bus."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import urllib3

from local.run import APPROVED_TEST_CARD_ID, REPO_ROOT, start_stack
from local.template import load_template
from local.workers import matches_filters, stream_records

REPO_TEMPLATE = REPO_ROOT / "template.yaml"


def test_local_stack_publishes_charge_events_from_the_stream() -> None:
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=20))
    with start_stack(0, environ={}, dynamodb="auto") as stack:
        # Given a consumer's rule routing the bus to a queue
        client: dict[str, Any] = {
            "endpoint_url": stack.aws_endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        sqs, events = boto3.client("sqs", **client), boto3.client("events", **client)
        bus = stack.resource_names["PaymentsBus"]
        queue = sqs.create_queue(QueueName=f"capture-{uuid.uuid4().hex[:12]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name="capture", EventBusName=bus, EventPattern='{"source": ["payments"]}')
        events.put_targets(Rule="capture", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
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
        # Then, within seconds, its charge.succeeded reached the bus; and the card, first seen
        # on that successful charge, was recorded (CARD item, one stream poll later) and
        # announced as card.saved
        seen: list[dict[str, Any]] = []

        def receive() -> None:
            answer = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0, MaxNumberOfMessages=10)
            for message in answer.get("Messages", []):
                seen.append(json.loads(message["Body"])["detail"])
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

        for _ in range(60):
            receive()
            if len(seen) >= 2:
                break
            time.sleep(0.25)
        time.sleep(1.5)  # a second poll must not publish either again
        receive()
        ids = [e["id"] for e in seen]
        assert f"charge.succeeded:{charge_id}:CAPTURED" in ids, ids
        assert sorted(i.split(":", 1)[0] for i in ids) == ["card.saved", "charge.succeeded"]


def test_stream_records_have_lambdas_shape_and_the_filter_applies() -> None:
    raw = {
        "eventID": "e1",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "ddblocal",
        "dynamodb": {
            "Keys": {"pk": {"S": "CHARGE#ch_1"}, "sk": {"S": "CHARGE"}},
            "NewImage": {"sk": {"S": "CHARGE"}, "epay": {}, "blob": {"B": b"\x01"}},
            "OldImage": {"sk": {"S": "CHARGE"}},
            "SequenceNumber": "0001",
            "SizeBytes": 10,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    (record,) = stream_records([raw], "arn:stream")
    assert record["eventSourceARN"] == "arn:stream"
    assert record["awsRegion"] == "us-east-1"
    assert record["dynamodb"]["NewImage"]["epay"] == {"M": {}}  # DynamoDB Local's empty map
    assert record["dynamodb"]["NewImage"]["blob"] == {"B": "AQ=="}
    charge_filter = {
        "eventName": ["INSERT", "MODIFY"],
        "dynamodb": {"NewImage": {"sk": {"S": ["CHARGE"]}}},
    }
    assert matches_filters(record, [charge_filter])
    history = {**record, "dynamodb": {**record["dynamodb"], "NewImage": {"sk": {"S": "H#1"}}}}
    assert not matches_filters(history, [charge_filter])
    assert not matches_filters({**record, "eventName": "REMOVE"}, [charge_filter])


def test_the_templates_stream_filter_passes_card_items() -> None:
    # Given the filter the template gives the charge events function (what the poller applies)
    template = load_template(REPO_TEMPLATE)
    function = template["Resources"]["ChargeEventsFunction"]["Properties"]
    (source,) = [e["Properties"] for e in function["Events"].values() if e["Type"] == "DynamoDB"]
    patterns = [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]

    def record(event_name: str, sk: str) -> dict[str, Any]:
        image = {"pk": {"S": "X#1"}, "sk": {"S": sk}}
        return {"eventName": event_name, "dynamodb": {"Keys": image, "NewImage": image}}

    # Then a written saved card (sk CARD) reaches the function, as charges, subscriptions and
    # refunds do
    for sk in ("CARD", "CHARGE", "SUB", "REFUND#rf_1"):
        assert matches_filters(record("INSERT", sk), patterns), sk
        assert matches_filters(record("MODIFY", sk), patterns), sk
    # And card setups, history items, invoices and removals do not
    for sk in ("SETUP", "H#0001", "INVOICE", "CARDKEY"):
        assert not matches_filters(record("INSERT", sk), patterns), sk
    assert not matches_filters(record("REMOVE", "CARD"), patterns)
