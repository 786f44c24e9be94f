"""local.aws.create_resources against moto (in-process): tables, secrets, queues, buses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local.aws import LOCAL_EPAY_CREDENTIALS, create_resources
from local.template import load_template

REPO_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )


def test_creates_the_table_from_the_template_with_ttl(
    session: boto3.session.Session, fixture_template: dict[str, Any]
) -> None:
    # Given the fixture template's table (pk/sk, a GSI, TTL on expiresAt, on-demand)
    # When the resources are created
    names = create_resources(fixture_template, session)

    # Then the table exists with the template's keys, index and billing mode
    dynamodb = session.client("dynamodb")
    table = dynamodb.describe_table(TableName=names["EchoTable"])["Table"]
    assert names["EchoTable"] == "local-EchoTable"
    assert {(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]} == {
        ("pk", "HASH"),
        ("sk", "RANGE"),
    }
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["gsi1"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert names["EchoTable.Arn"] == table["TableArn"]
    # And time to live is on the template's attribute
    ttl = dynamodb.describe_time_to_live(TableName=names["EchoTable"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_creates_the_secret_with_the_sandbox_credentials(
    session: boto3.session.Session, fixture_template: dict[str, Any]
) -> None:
    # When the resources are created
    names = create_resources(fixture_template, session)
    # Then the secret holds ePay's public sandbox merchant as JSON
    value = session.client("secretsmanager").get_secret_value(SecretId=names["EchoSecret"])
    assert json.loads(value["SecretString"]) == {
        "client_id": "test",
        "client_secret": "yF587AV9Ms94qN2QShFzVR3vFnWkhjbAK3sG",
        "terminal_id": "67e34d63-102f-4bd1-898e-370781d0074d",
    }
    assert value["SecretString"] == LOCAL_EPAY_CREDENTIALS


def test_creates_queues_with_redrive_and_buses(
    session: boto3.session.Session, fixture_template: dict[str, Any]
) -> None:
    # When the resources are created
    names = create_resources(fixture_template, session)
    # Then the queue exists with its attributes and points at its dead-letter queue
    sqs = session.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=names["EchoQueue"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["VisibilityTimeout"] == "60"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": names["EchoDeadLetters.Arn"],
        "maxReceiveCount": 3,
    }
    # And the bus has the template's (Sub-resolved) name
    assert names["EchoBus"] == "local-echo-bus"
    session.client("events").describe_event_bus(Name="local-echo-bus")


def test_is_idempotent_and_keeps_existing_secret_values(
    session: boto3.session.Session, fixture_template: dict[str, Any]
) -> None:
    # Given resources created once, and the secret changed since
    first = create_resources(fixture_template, session)
    secrets = session.client("secretsmanager")
    secrets.put_secret_value(SecretId=first["EchoSecret"], SecretString='{"client_id":"mine"}')

    # When they are created again
    second = create_resources(fixture_template, session)

    # Then nothing fails, the names are the same and the secret keeps the operator's value
    assert second == first
    value = secrets.get_secret_value(SecretId=first["EchoSecret"])["SecretString"]
    assert value == '{"client_id":"mine"}'


def test_accepts_ready_clients_and_a_stack_name(
    session: boto3.session.Session, fixture_template: dict[str, Any]
) -> None:
    # Given clients made by the caller (e.g. DynamoDB on another endpoint) and a stack name
    clients = {
        service: session.client(service)
        for service in ("dynamodb", "secretsmanager", "sqs", "events")
    }
    # When the resources are created with them
    names = create_resources(
        fixture_template, clients, stack_name="e2e", secret_strings={"EchoSecret": "{}"}
    )
    # Then the names carry the stack name and the given secret value is used
    assert names["EchoTable"] == "e2e-EchoTable"
    assert (
        clients["secretsmanager"].get_secret_value(SecretId="e2e-EchoSecret")["SecretString"]
        == "{}"
    )


def test_the_repository_table_has_the_account_cards_index(
    session: boto3.session.Session,
) -> None:
    # Given the project's own template.yaml (what `make run` creates)
    template = load_template(REPO_TEMPLATE)

    # When its resources are created
    names = create_resources(template, session)

    # Then the payments table has every index of the template, the cards index included
    dynamodb = session.client("dynamodb")
    table = dynamodb.describe_table(TableName=names["PaymentsTable"])["Table"]
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"DueIndex", "RenewalDueIndex", "AccountCardsIndex", "ChargeListIndex"}
    cards = indexes["AccountCardsIndex"]
    assert [(k["AttributeName"], k["KeyType"]) for k in cards["KeySchema"]] == [
        ("cardAccount", "HASH"),
        ("cardSort", "RANGE"),
    ]
    assert cards["Projection"]["ProjectionType"] == "ALL"

    # And an account's cards come back newest first; items without the keys stay out (sparse)
    for created, card_id in (("2026-01-01T00:00:00Z", "c1"), ("2026-02-01T00:00:00Z", "c2")):
        dynamodb.put_item(
            TableName=names["PaymentsTable"],
            Item={
                "pk": {"S": f"CARD#{card_id}"},
                "sk": {"S": "CARD"},
                "cardAccount": {"S": "acc-1"},
                "cardSort": {"S": f"{created}#{card_id}"},
            },
        )
    dynamodb.put_item(
        TableName=names["PaymentsTable"], Item={"pk": {"S": "SETUP#cs_1"}, "sk": {"S": "SETUP"}}
    )
    found = dynamodb.query(
        TableName=names["PaymentsTable"],
        IndexName="AccountCardsIndex",
        KeyConditionExpression="cardAccount = :account",
        ExpressionAttributeValues={":account": {"S": "acc-1"}},
        ScanIndexForward=False,
    )["Items"]
    assert [item["pk"]["S"] for item in found] == ["CARD#c2", "CARD#c1"]
