"""Checks on template.yaml for subscriptions (issue 6): IAM routes, queue, DLQ, alarm, bus."""

from __future__ import annotations

from typing import Any

from cfn_yaml import api_events, api_of, function_statements, ref_target

SUBSCRIPTION_ROUTES = {
    ("POST", "/subscriptions"),
    ("GET", "/subscriptions"),
    ("GET", "/subscriptions/{subscriptionId}"),
    ("PATCH", "/subscriptions/{subscriptionId}"),
    ("POST", "/subscriptions/{subscriptionId}/cancel"),
    ("POST", "/subscriptions/{subscriptionId}/pause"),
    ("POST", "/subscriptions/{subscriptionId}/resume"),
}


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in function["Properties"]["Policies"] for s in p["Statement"]]


def test_subscription_routes_are_iam_signed_merchant_routes(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    # Given every route under /subscriptions
    routes = {
        (e["Method"].upper(), e["Path"]): (fn, e)
        for fn, f in functions.items()
        for _, e in api_events(f)
        if e["Path"].startswith("/subscriptions")
    }
    # Then the API is complete, served by one function, and none opts out of IAM
    assert set(routes) == SUBSCRIPTION_ROUTES
    api_auth = template["Resources"]["MerchantApi"]["Properties"]["Auth"]
    assert api_auth["DefaultAuthorizer"] == "AWS_IAM"
    for function_id, event in routes.values():
        assert function_id == "SubscriptionsFunction"
        assert event.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM"
        assert api_of(event) == "MerchantApi"


def test_renewal_queue_has_a_dlq_with_an_alarm(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    queue = resources["RenewalQueue"]["Properties"]
    # Then messages move to the DLQ after five receives
    assert ref_target(queue["RedrivePolicy"]["deadLetterTargetArn"]) == "RenewalDLQ"
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    # And the visibility timeout covers the worker's timeout six times
    worker = resources["RenewalWorkerFunction"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    # And an alarm watches the DLQ's depth
    alarm = resources["RenewalDLQAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert ref_target(alarm["Dimensions"][0]["Value"]) == "RenewalDLQ"


def test_worker_is_capped_and_reports_partial_batch_failures(template: dict[str, Any]) -> None:
    worker = template["Resources"]["RenewalWorkerFunction"]["Properties"]
    assert ref_target(worker["ReservedConcurrentExecutions"]) == "RenewalWorkerConcurrency"
    (event,) = worker["Events"].values()
    assert event["Type"] == "SQS"
    assert ref_target(event["Properties"]["Queue"]) == "RenewalQueue"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    scaling = event["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert ref_target(scaling) == "RenewalWorkerConcurrency"
    assert set(worker["Environment"]["Variables"]) == {
        "RENEWAL_RETRY_LADDER",
        "RENEWAL_FINAL_ACTION",
        "POSTLINK_BASE_URL",  # renewal charges' postLinks: the postLink function's URL
    }


def test_dispatcher_runs_on_a_schedule_and_may_only_send_to_the_renewal_queue(
    template: dict[str, Any],
) -> None:
    dispatcher = template["Resources"]["RenewalDispatcherFunction"]["Properties"]
    (event,) = dispatcher["Events"].values()
    assert event["Type"] == "Schedule"
    assert ref_target(event["Properties"]["Schedule"]) == "RenewalSchedule"
    sqs = [s for s in _statements({"Properties": dispatcher}) if "sqs:SendMessage" in s["Action"]]
    assert [ref_target(r) for s in sqs for r in s["Resource"]] == ["RenewalQueue"]
    actions = {a for s in _statements({"Properties": dispatcher}) for a in s["Action"]}
    assert actions == {"dynamodb:Query", "dynamodb:UpdateItem", "sqs:SendMessage"}


def test_events_may_only_be_put_on_the_stacks_bus(template: dict[str, Any]) -> None:
    assert template["Resources"]["PaymentsBus"]["Type"] == "AWS::Events::EventBus"
    for function_id, function in template["Resources"].items():
        if function["Type"] != "AWS::Serverless::Function":
            continue
        for statement in function_statements(template, function_id):
            if "events:PutEvents" in statement["Action"]:
                assert statement["Action"] == ["events:PutEvents"], function_id
                assert [ref_target(r) for r in statement["Resource"]] == ["PaymentsBus"]


def test_table_has_the_sparse_sharded_renewal_index(template: dict[str, Any]) -> None:
    indexes = {
        i["IndexName"]: i
        for i in template["Resources"]["PaymentsTable"]["Properties"]["GlobalSecondaryIndexes"]
    }
    renewal = indexes["RenewalDueIndex"]
    assert [k["AttributeName"] for k in renewal["KeySchema"]] == ["renewShard", "renewAt"]
    assert renewal["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_renewal_configuration_is_parameterised(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["RenewalRetryLadder"]["Default"] == "1d,3d,5d"
    assert parameters["RenewalFinalAction"]["AllowedValues"] == ["unpaid", "cancelled"]
    assert parameters["RenewalWorkerConcurrency"]["MinValue"] >= 2
    assert parameters["RenewalSchedule"]["Default"].startswith("rate(")
