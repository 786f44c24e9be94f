"""Checks on template.yaml for the charge events outbox: the table's stream, its one consumer, its
retries and DLQ, and that no other function publishes charge.* (so none needs to)."""

from __future__ import annotations

import json
from typing import Any

from cfn_yaml import function_statements, ref_target

CHARGE_PATHS = ("ChargesFunction", "PostLinkFunction", "ReconcilerFunction", "ThreeDSFunction")


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
    # And only written charge, subscription, refund and saved card items reach the function
    (pattern,) = [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]
    assert pattern["dynamodb"]["NewImage"]["sk"] == {
        "S": ["CHARGE", "SUB", {"prefix": "REFUND#"}, "CARD"]
    }
    assert pattern["eventName"] == ["INSERT", "MODIFY"]
    # And an alarm watches the DLQ
    alarm = template["Resources"]["ChargeEventsDLQAlarm"]["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert ref_target(alarm["Dimensions"][0]["Value"]) == "ChargeEventsDLQ"


def test_charge_events_function_has_its_own_least_privilege_role(template: dict[str, Any]) -> None:
    # Given the stream function: it runs with a role of its own, not SAM's (which would attach
    # AWSLambdaDynamoDBExecutionRole: every stream of the account, any log group)
    function = template["Resources"]["ChargeEventsFunction"]["Properties"]
    assert function["Role"] == {"Fn::GetAtt": ["ChargeEventsRole", "Arn"]}
    assert "Policies" not in function
    role = template["Resources"]["ChargeEventsRole"]["Properties"]
    assert "ManagedPolicyArns" not in role

    # Then the role holds exactly: its log group, this table's stream, the bus, its DLQ, the
    # secret, and items of the table by partition key prefix: the saved card (a card first seen
    # on a successful charge is recorded) and, for a removed card, the account's subscription
    # listing and those subscriptions
    statements = function_statements(template, "ChargeEventsFunction")
    granted = {
        (a, _target(r), *_leading_keys(s))
        for s in statements
        for a in s["Action"]
        for r in s["Resource"]
    }
    assert granted == {
        ("logs:CreateLogStream", "ChargeEventsLogGroup"),
        ("logs:PutLogEvents", "ChargeEventsLogGroup"),
        ("dynamodb:DescribeStream", "PaymentsTable.StreamArn"),
        ("dynamodb:GetRecords", "PaymentsTable.StreamArn"),
        ("dynamodb:GetShardIterator", "PaymentsTable.StreamArn"),
        ("dynamodb:ListStreams", "${PaymentsTable.Arn}/stream/*"),
        ("events:PutEvents", "PaymentsBus"),
        ("sqs:SendMessage", "ChargeEventsDLQ"),
        ("secretsmanager:GetSecretValue", "EpayCredentialsSecret"),
        ("dynamodb:GetItem", "PaymentsTable", "CARD#*"),
        ("dynamodb:PutItem", "PaymentsTable", "CARD#*"),
        ("dynamodb:Query", "PaymentsTable", "ACCOUNT#*"),
        ("dynamodb:BatchGetItem", "PaymentsTable", "SUB#*"),
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    # And every statement on the table's items carries the key condition, and refuses a call
    # without a key (Scan): ForAllValues alone would let it pass
    for statement in statements:
        if "Condition" in statement:
            assert _target(statement["Resource"][0]) == "PaymentsTable", statement["Sid"]
            assert statement["Condition"]["Null"] == {"dynamodb:LeadingKeys": "false"}
            assert set(statement["Condition"]) == {"ForAllValues:StringLike", "Null"}


def _leading_keys(statement: dict[str, Any]) -> tuple[str, ...]:
    """The statement's dynamodb:LeadingKeys prefixes (none: an unconditioned statement)."""
    condition = statement.get("Condition", {})
    return tuple(condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys", ()))


def _target(resource: Any) -> str:
    """A readable name for a statement's resource: the logical id, `Id.Attribute` for the
    stream ARN, or the Sub string."""
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        logical_id, attribute = resource["Fn::GetAtt"]
        return logical_id if attribute == "Arn" else f"{logical_id}.{attribute}"
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        return str(resource["Fn::Sub"])
    return str(ref_target(resource))


def test_charge_paths_no_longer_put_events(template: dict[str, Any]) -> None:
    # The stream is the one publisher of charge.*: the paths that settle charges need no PutEvents
    for function_id in CHARGE_PATHS:
        actions = {a for s in function_statements(template, function_id) for a in s["Action"]}
        assert "events:PutEvents" not in actions, function_id
