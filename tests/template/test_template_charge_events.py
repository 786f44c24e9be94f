"""Checks on template.yaml for the charge events outbox: the table's stream, its one consumer, its
retries and DLQ, and that no other function publishes charge.* (so none needs to)."""

from __future__ import annotations

import json
from typing import Any

from cfn_yaml import ref_target

CHARGE_PATHS = ("ChargesFunction", "PostLinkFunction", "ReconcilerFunction", "ThreeDSFunction")


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in function["Properties"]["Policies"] for s in p["Statement"]]


def _stream_event(template: dict[str, Any]) -> dict[str, Any]:
    events = template["Resources"]["ChargeEventsFunction"]["Properties"]["Events"]
    (source,) = [e["Properties"] for e in events.values() if e["Type"] == "DynamoDB"]
    return dict(source)


def test_table_streams_both_images(template: dict[str, Any]) -> None:
    table = template["Resources"]["PaymentsTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_charge_events_consume_the_stream_with_retries_bisect_and_a_dlq(
    template: dict[str, Any],
) -> None:
    source = _stream_event(template)
    assert source["Stream"] == {"Fn::GetAtt": ["PaymentsTable", "StreamArn"]}
    assert source["StartingPosition"] == "TRIM_HORIZON"
    assert source["BisectBatchOnFunctionError"] is True
    assert 1 <= source["MaximumRetryAttempts"] <= 20
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    on_failure = source["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert ref_target(on_failure["Destination"]) == "ChargeEventsDLQ"
    # And only written charge items reach the function
    (pattern,) = [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]
    assert pattern["dynamodb"]["NewImage"]["sk"] == {"S": ["CHARGE", "SUB"]}
    assert pattern["eventName"] == ["INSERT", "MODIFY"]
    # And an alarm watches the DLQ
    alarm = template["Resources"]["ChargeEventsDLQAlarm"]["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert ref_target(alarm["Dimensions"][0]["Value"]) == "ChargeEventsDLQ"


def test_charge_events_function_is_least_privilege(template: dict[str, Any]) -> None:
    statements = _statements(template["Resources"]["ChargeEventsFunction"])
    granted = {(a, ref_target(r)) for s in statements for a in s["Action"] for r in s["Resource"]}
    assert granted == {
        ("dynamodb:DescribeStream", "PaymentsTable"),
        ("dynamodb:GetRecords", "PaymentsTable"),
        ("dynamodb:GetShardIterator", "PaymentsTable"),
        ("events:PutEvents", "PaymentsBus"),
        ("sqs:SendMessage", "ChargeEventsDLQ"),
        ("secretsmanager:GetSecretValue", "EpayCredentialsSecret"),
    }
    stream = [s for s in statements if "dynamodb:GetRecords" in s["Action"]]
    assert [r for s in stream for r in s["Resource"]] == [
        {"Fn::GetAtt": ["PaymentsTable", "StreamArn"]}
    ]


def test_charge_paths_no_longer_put_events(template: dict[str, Any]) -> None:
    # The stream is the one publisher of charge.*: the paths that settle charges need no PutEvents
    for function_id in CHARGE_PATHS:
        actions = {a for s in _statements(template["Resources"][function_id]) for a in s["Action"]}
        assert "events:PutEvents" not in actions, function_id
