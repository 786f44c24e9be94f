"""`make run` publishes charge.* from the table's stream: the local poller reads DynamoDB Local's
stream (LATEST at start) and invokes the charge events handler, whose events reach the bus."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import urllib3

from local.dynamodb_local import DynamoDBLocal
from local.run import APPROVED_TEST_CARD_ID, REPO_ROOT, start_stack
from local.template import load_template
from local.workers import ChargeEventWorker, lambda_stream_records, matches_filters, stream_records

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


@dataclass
class _StreamDb:
    """DynamoDB Local with the clients the stream tests use (one process for the module)."""

    session: boto3.session.Session
    dynamodb: Any
    streams: Any


@pytest.fixture(scope="module")
def stream_db() -> Iterator[_StreamDb]:
    ddb = DynamoDBLocal().start()
    try:
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        yield _StreamDb(
            session,
            session.client("dynamodb", endpoint_url=ddb.url),
            session.client("dynamodbstreams", endpoint_url=ddb.url),
        )
    finally:
        ddb.stop()


def _stream_table(dynamodb: Any, name: str) -> None:
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def test_raw_stream_reads_give_botocores_records_in_batches_of_the_templates_size(
    stream_db: _StreamDb,
) -> None:
    # Given DynamoDB Local, a table with a stream and the template's charge events source
    template = load_template(REPO_TEMPLATE)
    session, dynamodb, streams = stream_db.session, stream_db.dynamodb, stream_db.streams
    _stream_table(dynamodb, "payments-raw")

    def worker(**kwargs: Any) -> ChargeEventWorker:
        return ChargeEventWorker(
            template,
            REPO_ROOT,
            dynamodb,
            streams,
            "payments-raw",
            start_at="TRIM_HORIZON",
            **kwargs,
        )

    raw, parsed = worker(credentials=session.get_credentials()), worker()
    assert raw.batch_size == 25
    # When 30 charge items (with what DynamoDB Local's stream says its own way: an empty
    # map, binary, a number) and a history item are written, and both workers read them
    for n in range(30):
        item = {
            "pk": {"S": f"CHARGE#ch_{n:02}"},
            "sk": {"S": "CHARGE"},
            "epay": {"M": {}},
            "nested": {"M": {"inner": {"M": {}}}},
            "blob": {"B": b"\x01"},
            "amount": {"N": "1500.50"},
        }
        dynamodb.put_item(TableName="payments-raw", Item=item)
    dynamodb.put_item(
        TableName="payments-raw", Item={"pk": {"S": "CHARGE#ch_00"}, "sk": {"S": "H#1"}}
    )
    got: dict[str, list[list[dict[str, Any]]]] = {"raw": [], "parsed": []}

    def spy(name: str) -> Any:
        def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
            got[name].append(event["Records"])
            return {"batchItemFailures": []}

        return handler

    assert raw.deliver_once(spy("raw")) == 30
    assert parsed.deliver_once(spy("parsed")) == 30
    # Then the function gets the filtered records in batches of BatchSize (25), and the
    # records read from GetRecords' JSON are exactly those botocore's parsing gave
    assert [len(batch) for batch in got["raw"]] == [25, 5]
    assert [r for b in got["raw"] for r in b] == [r for b in got["parsed"] for r in b]
    first = got["raw"][0][0]
    assert first["awsRegion"] == "us-east-1"
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], int)
    assert first["dynamodb"]["NewImage"]["epay"] == {"M": {}}
    assert first["dynamodb"]["NewImage"]["nested"] == {"M": {"inner": {"M": {}}}}
    assert first["dynamodb"]["NewImage"]["blob"] == {"B": "AQ=="}
    raw.stop()


def test_a_failed_record_or_a_raising_batch_is_read_again_from_its_failure(
    stream_db: _StreamDb,
) -> None:
    # Given DynamoDB Local, a table with a stream and the raw-reading worker
    template = load_template(REPO_TEMPLATE)
    session, dynamodb, streams = stream_db.session, stream_db.dynamodb, stream_db.streams
    _stream_table(dynamodb, "payments-retry")
    worker = ChargeEventWorker(
        template,
        REPO_ROOT,
        dynamodb,
        streams,
        "payments-retry",
        start_at="TRIM_HORIZON",
        credentials=session.get_credentials(),
    )
    for n in range(4):
        dynamodb.put_item(
            TableName="payments-retry",
            Item={"pk": {"S": f"CHARGE#ch_{n}"}, "sk": {"S": "CHARGE"}},
        )
    seen: list[list[str]] = []
    outcomes: list[str] = ["fail-third", "raise", "ok"]

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        records = event["Records"]
        seen.append([r["dynamodb"]["Keys"]["pk"]["S"] for r in records])
        outcome = outcomes.pop(0)
        if outcome == "raise":
            raise RuntimeError("the function failed")
        if outcome == "fail-third":
            failed = records[2]["dynamodb"]["SequenceNumber"]
            return {"batchItemFailures": [{"itemIdentifier": failed}]}
        return {"batchItemFailures": []}

    # When the first invocation reports its third record failed, and the next one raises
    for _ in range(3):
        worker.deliver_once(handler)
    # Then each later poll starts again from the failure, as Lambda retries
    assert seen == [
        ["CHARGE#ch_0", "CHARGE#ch_1", "CHARGE#ch_2", "CHARGE#ch_3"],
        ["CHARGE#ch_2", "CHARGE#ch_3"],
        ["CHARGE#ch_2", "CHARGE#ch_3"],
    ]
    worker.stop()


def test_wire_records_keep_their_json_and_only_dynamodb_locals_quirks_change() -> None:
    # Given GetRecords' wire JSON as DynamoDB Local answers it
    wire = {
        "eventID": "e1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "ddblocal",
        "dynamodb": {
            "ApproximateCreationDateTime": 1796555040.0,
            "Keys": {"pk": {"S": "CHARGE#ch_1"}, "sk": {"S": "CHARGE"}},
            "NewImage": {
                "sk": {"S": "CHARGE"},
                "epay": {},
                "list": {"L": [{}]},
                "b": {"B": "AQ=="},
            },
            "SequenceNumber": "000000000000000000001",
            "SizeBytes": 31,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    # When it becomes Lambda's record
    (record,) = lambda_stream_records([wire], "arn:stream")
    # Then empty maps are typed, the time is whole seconds, the region the table's
    change = record["dynamodb"]
    assert change["NewImage"]["epay"] == {"M": {}}
    assert change["NewImage"]["list"] == {"L": [{"M": {}}]}
    assert change["NewImage"]["b"] == {"B": "AQ=="}
    assert change["ApproximateCreationDateTime"] == 1796555040
    assert record["awsRegion"] == "us-east-1"
    assert record["eventSourceARN"] == "arn:stream"
    # And an answer without "{}" is not walked at all (the images are passed as they are)
    (as_is,) = lambda_stream_records([wire], "arn:stream", untyped_maps=False)
    assert as_is["dynamodb"]["NewImage"] is wire["dynamodb"]["NewImage"]  # type: ignore[index]
