"""Checks on template.yaml for what an on-call engineer does (issue 14): the timeline route on the
charges function, the operator function (its routes, least-privilege policy, log group, alarms,
dashboard lines) and the IAM policies that keep the operator routes from merchants."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from cfn_yaml import api_events, api_of, function_property, function_statements, ref_target

from payments.aws.inbox import invoice_partition

ARN = "arn:aws:execute-api:eu-central-1:111122223333:a1b2c3d4e5/$default/"
PLACEHOLDER = "arn:aws:execute-api:<region>:<account-id>:<merchant-api-id>/$default/"
OPERATOR_ROUTES = {
    ("POST", "/charges/{chargeId}/resolve"),
    ("POST", "/postlinks/{inboxId}/replay"),
}
CH = "ch_" + "0" * 32
INBOX = "0" * 64


def _routes(functions: dict[str, dict[str, Any]]) -> dict[tuple[str, str], tuple[str, Any]]:
    return {
        (e["Method"].upper(), e["Path"]): (function_id, e)
        for function_id, function in functions.items()
        for _, e in api_events(function)
    }


def _verdict(policy_path: Path, method: str, path: str) -> str:
    """What an IAM policy of docs/iam says to a call (Deny wins; `*` spans `/` as in IAM)."""
    policy = json.loads(policy_path.read_text(encoding="utf-8"))
    arn = f"{ARN}{method}{path}"
    found = "implicit deny"
    for statement in policy["Statement"]:
        assert statement["Action"] == "execute-api:Invoke"
        patterns = [r.replace(PLACEHOLDER, ARN) for r in statement["Resource"]]
        if any(fnmatchcase(arn, pattern) for pattern in patterns):
            if statement["Effect"] == "Deny":
                return "deny"
            found = "allow"
    return found


# ------------------------------------------------------------------------------ routes


def test_operator_routes_are_iam_signed_routes_of_the_operator_function(
    functions: dict[str, dict[str, Any]],
) -> None:
    # Given every API route of the template
    routes = _routes(functions)
    # Then the operator's two actions are the operator function's, IAM-signed, on the API
    served = {key for key, (function_id, _) in routes.items() if function_id == "OperatorFunction"}
    assert served == OPERATOR_ROUTES
    for key in OPERATOR_ROUTES:
        _, event = routes[key]
        assert api_of(event) == "MerchantApi"
        assert event.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM", key
    # And the timeline is a read of the charges function, IAM-signed too
    function_id, event = routes[("GET", "/charges/{chargeId}/history")]
    assert function_id == "ChargesFunction"
    assert event.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM"


def test_the_operator_paths_are_not_public(template: dict[str, Any]) -> None:
    # Given the API's resource policy / Then its public Allow names no operator path
    statements = template["Resources"]["PaymentsApi"]["Properties"]["Auth"]["ResourcePolicy"][
        "CustomStatements"
    ]
    public = [s for s in statements if isinstance(s, dict) and s.get("Sid") == "PublicRoutes"]
    for resource in public[0]["Resource"]:
        assert "resolve" not in resource
        assert "postlinks" not in resource
        assert "history" not in resource


# ------------------------------------------------------------------------------ the function


def test_the_operator_function_is_short_logged_and_layered(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    function = functions["OperatorFunction"]
    properties = function["Properties"]
    # Then it runs the operator handler with the layer, within API Gateway's timeout
    assert properties["CodeUri"] == "functions/operator/"
    assert properties["Handler"] == "app.lambda_handler"
    assert [ref_target(layer) for layer in properties["Layers"]] == ["PaymentsLayer"]
    assert function_property(template, function, "Timeout") <= 15
    # And it logs to its own group, with retention
    group_id = ref_target(properties["LoggingConfig"]["LogGroup"])
    group = template["Resources"][group_id]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}-operator"}
    # And its checkov skips say why
    skips = {s["id"] for s in function["Metadata"]["checkov"]["skip"]}
    assert skips == {"CKV_AWS_115", "CKV_AWS_116"}


def test_the_operator_function_touches_only_the_items_it_needs(template: dict[str, Any]) -> None:
    # Given the operator function's statements
    statements = function_statements(template, "OperatorFunction")
    actions = {a for s in statements for a in s["Action"]}
    # Then it reads, queries a charge's history and writes single items of the table, and reads
    # the ePay secret: no Scan, no delete, no batch, no index, no events, no queues
    assert actions == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "secretsmanager:GetSecretValue",
    }
    resources = {ref_target(r) for s in statements for r in s["Resource"]}
    assert resources == {"PaymentsTable", "EpayCredentialsSecret"}
    # And every table statement is held to its items' key prefixes, refusing keyless calls
    by_action: dict[str, set[str]] = {}
    for statement in statements:
        if not any(a.startswith("dynamodb:") for a in statement["Action"]):
            continue
        condition = statement["Condition"]
        assert condition["Null"] == {"dynamodb:LeadingKeys": "false"}
        prefixes = set(condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
        for action in statement["Action"]:
            by_action.setdefault(action, set()).update(prefixes)
    # Writes: the charge and its history, and what a replayed postLink of a card setup writes;
    # never an idempotency key, a subscription or a refund
    assert by_action["dynamodb:PutItem"] == {"CHARGE#*", "TERMINAL#*", "SETUP#*", "CARD#*"}
    # (a replay's notification: in its invoice's partition, or of the old layout until its TTL;
    # the charge's status change: one conditional write of its item)
    assert by_action["dynamodb:UpdateItem"] == {"POSTLINKS#*", "INBOX#*", "INVOICE#*", "CHARGE#*"}
    assert {"POSTLINKS#*", "INBOX#*"} <= by_action["dynamodb:GetItem"]
    assert not any(
        p.startswith(("IDEMPOTENCY", "SUB", "REFUND")) for p in set().union(*by_action.values())
    )


def test_the_charges_function_may_read_the_timeline(template: dict[str, Any]) -> None:
    # Given the charges function's table statements
    statements = function_statements(template, "ChargesFunction")
    table = [s for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])]
    actions = {a for s in table for a in s["Action"]}
    resources = [r for s in table for r in s["Resource"]]
    # Then it may query the table itself: an invoice's notifications are one partition of it
    # (no index since issue 16), the charge's history items another
    table_arn = {"Fn::GetAtt": ["PaymentsTable", "Arn"]}
    assert any("dynamodb:Query" in s["Action"] and table_arn in s["Resource"] for s in table)
    assert invoice_partition("000000042") == "POSTLINKS#000000042"
    # And the list index (GET /charges), read with BatchGetItem of a page's charges
    assert "dynamodb:BatchGetItem" in actions
    assert {"Fn::Sub": "${PaymentsTable.Arn}/index/ChargeListIndex"} in resources


def test_the_operator_function_has_its_alarms_and_dashboard_lines(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for alarm_id, metric in (
        ("OperatorErrorsAlarm", "Errors"),
        ("OperatorThrottlesAlarm", "Throttles"),
    ):
        alarm = resources[alarm_id]["Properties"]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", metric)
        assert alarm["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": "OperatorFunction"}}
        ]
        assert "First:" in alarm["AlarmDescription"]
        assert alarm["AlarmActions"]
        assert alarm["OKActions"]
    body = resources["PaymentsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for metric in ("Errors", "Duration", "Throttles"):
        assert f'["AWS/Lambda", "{metric}", "FunctionName", "${{OperatorFunction}}"' in body
    assert template["Outputs"]["OperatorFunctionName"]["Value"] == {"Ref": "OperatorFunction"}


# ------------------------------------------------------------------------------ IAM policies


def test_merchants_are_denied_the_operator_actions(repo_root: Path) -> None:
    merchant = repo_root / "docs" / "iam" / "merchant-policy.json"
    assert _verdict(merchant, "POST", f"/charges/{CH}/resolve") == "deny"
    assert _verdict(merchant, "POST", f"/postlinks/{INBOX}/replay") == "deny"
    assert _verdict(merchant, "POST", f"/charges/{CH}/reconcile") == "deny"
    # And they keep reading their charges
    assert _verdict(merchant, "GET", f"/charges/{CH}") == "allow"


def test_operators_may_read_resolve_replay_and_reconcile_but_move_no_money(
    repo_root: Path,
) -> None:
    policy = repo_root / "docs" / "iam" / "operator-policy.json"
    for method, path in (
        ("POST", f"/charges/{CH}/resolve"),
        ("POST", f"/postlinks/{INBOX}/replay"),
        ("POST", f"/charges/{CH}/reconcile"),
        ("GET", f"/charges/{CH}/history"),
        ("GET", f"/charges/{CH}"),
        ("GET", "/charges"),
        ("GET", f"/charges/{CH}/refunds"),
        ("GET", "/refunds/re_1"),
        ("GET", "/subscriptions"),
    ):
        assert _verdict(policy, method, path) == "allow", (method, path)
    for method, path in (
        ("POST", "/charges"),
        ("POST", f"/charges/{CH}/capture"),
        ("POST", f"/charges/{CH}/cancel"),
        ("POST", f"/charges/{CH}/refunds"),
        ("POST", "/subscriptions"),
        ("PATCH", "/subscriptions/sub_1"),
        ("POST", "/card-setups"),
        ("DELETE", "/accounts/a/cards/c"),
    ):
        assert _verdict(policy, method, path) == "deny", (method, path)


def test_every_operator_route_of_the_template_is_granted_by_the_operator_policy(
    repo_root: Path, functions: dict[str, dict[str, Any]]
) -> None:
    policy = repo_root / "docs" / "iam" / "operator-policy.json"
    for method, path in OPERATOR_ROUTES | {("GET", "/charges/{chargeId}/history")}:
        concrete = path.replace("{chargeId}", CH).replace("{inboxId}", INBOX)
        assert _verdict(policy, method, concrete) == "allow", (method, path)
    assert set(_routes(functions)) >= OPERATOR_ROUTES
