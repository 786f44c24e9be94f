"""Checks on template.yaml for the hardening issue: the public functions' items, the alarms and
where they go, API Gateway's own errors, who may call the merchant routes, the stream function's
role, and the security scanners with a reason for every skip."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfn_yaml import REPO_ROOT, api_events, function_statements, ref_target, resources_of_type

from payments import errors

# The items each public function may touch, by action and partition key prefix (read from the
# code: payments.aws.charge_store, payments.aws.card_store and payments.aws.inbox, as used by the
# postLink intake, the 3-D Secure pages and the card setup page). A transaction's items are
# authorised one by one as PutItem/UpdateItem. A card setup that succeeds (postLink) is one
# transaction: the setup and the card (Put); for a paying setup also its new charge and history
# item (Put) and the invoice pointed at that charge (Update).
PUBLIC_FUNCTION_KEYS: dict[str, dict[str, set[str]]] = {
    "PostLinkFunction": {
        "dynamodb:GetItem": {"CHARGE#*", "INVOICE#*", "TERMINAL#*", "SETUP#*", "CARD#*"},
        "dynamodb:PutItem": {"CHARGE#*", "TERMINAL#*", "SETUP#*", "CARD#*"},
        "dynamodb:UpdateItem": {"POSTLINKS#*", "INVOICE#*", "CHARGE#*"},
    },
    "ThreeDSFunction": {
        "dynamodb:GetItem": {"CHARGE#*", "INVOICE#*"},
        "dynamodb:PutItem": {"CHARGE#*"},
        "dynamodb:UpdateItem": {"CHARGE#*"},
    },
    "CardPagesFunction": {
        "dynamodb:GetItem": {"SETUP#*"},
        "dynamodb:PutItem": {"SETUP#*"},
    },
}

ALARM_TARGET = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}

# API Gateway's own answers and the code each gives, with the error class of the service whose
# code it reuses where one means the same thing.
GATEWAY_RESPONSE_CODES: dict[str, str] = {
    "DEFAULT_4XX": "bad_request",
    "DEFAULT_5XX": errors.PaymentsError.code,
    "MISSING_AUTHENTICATION_TOKEN": "missing_authentication",
    "INVALID_SIGNATURE": "invalid_signature",
    "EXPIRED_TOKEN": "expired_token",
    "ACCESS_DENIED": errors.ForgedNotificationError.code,
    "WAF_FILTERED": errors.ForgedNotificationError.code,
    "RESOURCE_NOT_FOUND": errors.NotFoundError.code,
    "REQUEST_TOO_LARGE": errors.PayloadTooLargeError.code,
    "THROTTLED": "rate_limited",
    "INTEGRATION_TIMEOUT": "timeout",
}
GATEWAY_RESPONSE_STATUS = {
    "MISSING_AUTHENTICATION_TOKEN": "403",
    "INVALID_SIGNATURE": "403",
    "EXPIRED_TOKEN": "403",
    "ACCESS_DENIED": "403",
    "WAF_FILTERED": "403",
    "RESOURCE_NOT_FOUND": "404",
    "REQUEST_TOO_LARGE": "413",
    "THROTTLED": "429",
    "INTEGRATION_TIMEOUT": "504",
}
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
DECISION_HEADING = "Security scans and their skips"


def _api(template: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"]["PaymentsApi"]["Properties"]
    return properties


def _dynamodb_statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    return [
        s
        for s in function_statements(template, function_id)
        if any(str(a).startswith("dynamodb:") for a in s["Action"])
    ]


def _decisions(repo_root: Path) -> str:
    text = (repo_root / "docs" / "decisions.md").read_text(encoding="utf-8")
    assert DECISION_HEADING in text, "docs/decisions.md lacks the security scans entry"
    return text[text.index(DECISION_HEADING) :]


# ------------------------------------------------------------------------------ public functions


@pytest.mark.parametrize("function_id", sorted(PUBLIC_FUNCTION_KEYS))
def test_public_functions_touch_only_their_items(
    template: dict[str, Any], function_id: str
) -> None:
    # Given a public function's DynamoDB statements
    statements = _dynamodb_statements(template, function_id)
    assert statements

    granted: dict[str, set[str]] = {}
    for statement in statements:
        # Then each is limited by the partition key's prefix, for every key the call carries
        condition = statement.get("Condition", {})
        prefixes = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
        assert prefixes, f"{function_id}.{statement.get('Sid')}: no dynamodb:LeadingKeys"
        # And a call without a key (Scan, ...) is refused: ForAllValues alone would let it pass
        assert condition.get("Null") == {"dynamodb:LeadingKeys": "false"}, statement.get("Sid")
        assert [ref_target(r) for r in statement["Resource"]] == ["PaymentsTable"]
        for action in statement["Action"]:
            granted.setdefault(action, set()).update(prefixes)

    # And the union is exactly what the function's code touches, action by action
    assert granted == PUBLIC_FUNCTION_KEYS[function_id]


def test_public_function_prefixes_are_the_stores_keys(repo_root: Path) -> None:
    # Given the stores the public functions use
    aws = repo_root / "layers" / "payments" / "payments" / "aws"
    source = "".join(
        (aws / name).read_text(encoding="utf-8")
        for name in ("charge_store.py", "card_store.py", "inbox.py")
    )

    # Then every prefix the policies allow is a key prefix the code writes or reads
    for keys in PUBLIC_FUNCTION_KEYS.values():
        for prefix in set().union(*keys.values()):
            assert f'"{prefix[:-1]}' in source or f'f"{prefix[:-1]}{{' in source, prefix


# ------------------------------------------------------------------------------ alarms


def test_every_alarm_notifies_the_topic_and_says_what_to_do(template: dict[str, Any]) -> None:
    alarms = resources_of_type(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 4

    for alarm_id, alarm in alarms.items():
        properties = alarm["Properties"]
        # Then it notifies the alarm topic (the given one, or the stack's), and again when OK
        assert properties.get("AlarmActions") == [ALARM_TARGET], alarm_id
        assert properties.get("OKActions") == [ALARM_TARGET], alarm_id
        # And its description says what it means and the first thing to do
        description = " ".join(str(properties.get("AlarmDescription", "")).split())
        assert "First:" in description, f"{alarm_id}: no first step in the description"
        meaning, _, first_step = description.partition("First:")
        assert len(meaning) >= 40, alarm_id
        assert len(first_step) >= 40, alarm_id
        assert len(description) <= 1024, alarm_id
        # And silence is not an alarm
        assert properties.get("TreatMissingData") == "notBreaching", alarm_id


def test_alarm_topic_is_given_or_created(template: dict[str, Any]) -> None:
    # Given the parameter and the conditions
    parameters = template["Parameters"]
    assert parameters["AlarmTopicArn"]["Default"] == ""
    pattern = re.compile(parameters["AlarmTopicArn"]["AllowedPattern"])
    assert pattern.fullmatch("arn:aws:sns:eu-central-1:123456789012:oncall")
    assert pattern.fullmatch("")
    assert not pattern.fullmatch("oncall")
    conditions = template["Conditions"]
    assert conditions["CreateAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}

    # Then the stack creates the topic (and an optional e-mail subscription) only when none is
    # given, and names the one in use in its outputs
    resources = template["Resources"]
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert resources["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "SubscribeAlarmEmail"
    assert {"Condition": "CreateAlarmTopic"} in conditions["SubscribeAlarmEmail"]["Fn::And"]
    assert template["Outputs"]["AlarmTopicArn"]["Value"] == ALARM_TARGET


def test_every_function_has_an_errors_and_a_throttles_alarm(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    watched: dict[str, set[str]] = {}
    for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if properties.get("Namespace") != "AWS/Lambda":
            continue
        (dimension,) = properties["Dimensions"]
        assert dimension["Name"] == "FunctionName"
        watched.setdefault(str(ref_target(dimension["Value"])), set()).add(properties["MetricName"])
        # Any failure or refusal counts (the singletons' throttles: three periods in a row)
        assert properties["Statistic"] == "Sum"
        assert properties["Threshold"] == 1
        assert properties["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"

    # Then every function is watched for both
    assert watched == {function_id: {"Errors", "Throttles"} for function_id in functions}


def test_api_5xx_alarm_watches_the_api_stage(template: dict[str, Any]) -> None:
    alarm = template["Resources"]["Api5xxAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/ApiGateway"
    assert alarm["MetricName"] == "5XXError"
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    # The API's own name and stage (AWS/ApiGateway REST metrics are keyed by both)
    assert dimensions["ApiName"] == _api(template)["Name"]
    assert ref_target(dimensions["Stage"]) == "StageName"
    # And the merchant API's: an HTTP API's metric is "5xx", keyed by its id
    merchant = template["Resources"]["MerchantApi5xxAlarm"]["Properties"]
    assert (merchant["Namespace"], merchant["MetricName"]) == ("AWS/ApiGateway", "5xx")
    assert [(d["Name"], ref_target(d["Value"])) for d in merchant["Dimensions"]] == [
        ("ApiId", "MerchantApi")
    ]
    assert merchant["Threshold"] == alarm["Threshold"]


# ------------------------------------------------------------------------------ gateway responses


def test_api_gateway_errors_use_the_service_error_shape(template: dict[str, Any]) -> None:
    responses = _api(template)["GatewayResponses"]
    assert set(responses) == set(GATEWAY_RESPONSE_CODES)

    for response_type, response in responses.items():
        # Given the JSON template, with API Gateway's message as it would fill it in
        body = response["ResponseTemplates"]["application/json"]
        filled = body.replace("$context.error.messageString", json.dumps("Forbidden"))
        assert "$context" not in filled, f"{response_type}: only the message may be filled in"

        # Then it is {"error": {"code", "message"}} with the service's code
        error = json.loads(filled)["error"]
        assert set(json.loads(filled)) == {"error"}
        assert set(error) == {"code", "message"}, response_type
        assert SNAKE_CASE.fullmatch(error["code"]), response_type
        assert error["code"] == GATEWAY_RESPONSE_CODES[response_type], response_type
        assert error["message"], response_type
        # And the status is API Gateway's own (fixed where a type has one) and never cached
        assert response.get("StatusCode") == GATEWAY_RESPONSE_STATUS.get(response_type)
        headers = response["ResponseParameters"]["Headers"]
        assert headers["Cache-Control"] == "'no-store'", response_type


# ------------------------------------------------------------------------------ resource policy


def _execute_api_arn(method: str, path: str) -> str:
    return f"execute-api:/*/{method.upper()}" + re.sub(r"\{[^}]+\}", "*", path)


def _statements_by_sid(template: dict[str, Any]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Sid -> (the condition it depends on, or None; the statement)."""
    found: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for item in _api(template)["Auth"]["ResourcePolicy"]["CustomStatements"]:
        if "Fn::If" in item:
            condition, statement, otherwise = item["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
            found[statement["Sid"]] = (condition, statement)
        else:
            found[item["Sid"]] = (None, item)
    return found


def test_public_routes_stay_callable_by_anyone(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    # Given the routes that opt out of IAM
    public = {
        _execute_api_arn(e["Method"], e["Path"])
        for f in functions.values()
        for _, e in api_events(f)
        if e.get("Auth", {}).get("Authorizer") == "NONE"
    }
    assert public

    # Then the resource policy allows exactly those to anyone, always
    condition, statement = _statements_by_sid(template)["PublicRoutes"]
    assert condition is None
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "execute-api:Invoke"
    assert "Condition" not in statement
    assert set(statement["Resource"]) == public


def test_merchant_principals_parameter_restricts_signed_callers(template: dict[str, Any]) -> None:
    # Given the parameter: empty by default (principals of this account, by their own policy)
    parameter = template["Parameters"]["MerchantPrincipalArns"]
    assert parameter["Default"] == ""
    # (a String, split where used)
    assert parameter["Type"] == "String"
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("arn:aws:iam::123456789012:role/shop")
    assert pattern.fullmatch("arn:aws:iam::123456789012:role/shop,arn:aws:iam::210987654321:role/*")
    for bad in ("shop", "arn:aws:iam::1:role/x", "arn:aws:iam::123456789012:role/a, b", ","):
        assert not pattern.fullmatch(bad), bad
    assert template["Conditions"]["RestrictMerchantPrincipals"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "MerchantPrincipalArns"}, ""]}]
    }
    listed = {"Fn::Split": [",", {"Ref": "MerchantPrincipalArns"}]}
    # Then, only when principals are listed, a role exists that only they may assume (an HTTP
    # API has no resource policy: a merchant of another account signs with this role)
    role = template["Resources"]["MerchantInvokeRole"]
    assert role["Condition"] == "RestrictMerchantPrincipals"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Effect"], trust["Action"]) == ("Allow", "sts:AssumeRole")
    assert trust["Condition"] == {"ArnLike": {"aws:PrincipalArn": listed}}
    # And it may call the merchant API and nothing else, never the operator's routes
    (policy,) = role["Properties"]["Policies"]
    statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(statements) == {"MerchantRoutes", "NotTheOperatorRoutes"}
    allow, deny = statements["MerchantRoutes"], statements["NotTheOperatorRoutes"]
    assert (allow["Effect"], allow["Action"]) == ("Allow", "execute-api:Invoke")
    assert "${MerchantApi}/$default/*/*" in allow["Resource"]["Fn::Sub"]
    assert (deny["Effect"], deny["Action"]) == ("Deny", "execute-api:Invoke")
    denied = " ".join(r["Fn::Sub"] for r in deny["Resource"])
    for operator_route in ("POST/charges/*/reconcile", "*/charges/*/resolve", "*/postlinks/*"):
        assert f"${{MerchantApi}}/$default/{operator_route}" in denied, operator_route
    # And the stack says which role to assume
    output = template["Outputs"]["MerchantInvokeRoleArn"]
    assert output["Condition"] == "RestrictMerchantPrincipals"
    # And the public pages' REST API allows only its public routes to anyone
    assert set(_statements_by_sid(template)) == {"PublicRoutes"}


# ------------------------------------------------------------------------------ IAM


def test_only_the_stream_function_and_the_renewal_worker_put_events(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    # charge.* and subscription.* of API changes come from the table's stream (the outbox); the
    # renewal worker publishes its own subscription.* events
    putting = {
        function_id
        for function_id in functions
        if any(
            "events:PutEvents" in s["Action"] for s in function_statements(template, function_id)
        )
    }
    assert putting == {"ChargeEventsFunction", "RenewalWorkerFunction"}


def test_every_queue_is_encrypted(template: dict[str, Any]) -> None:
    # The compensating control for skipping CKV_AWS_27 (it only knows KMS keys)
    for queue_id, queue in resources_of_type(template, "AWS::SQS::Queue").items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, queue_id


# ------------------------------------------------------------------------------ scanners


def _checkov_config(repo_root: Path) -> dict[str, Any]:
    import yaml

    config: dict[str, Any] = yaml.safe_load((repo_root / ".checkov.yaml").read_text("utf-8"))
    return config


def test_checkov_scans_the_template_and_skips_only_documented_checks(
    template: dict[str, Any], repo_root: Path
) -> None:
    # Given checkov's configuration
    config = _checkov_config(repo_root)
    assert "cloudformation" in config["framework"]
    assert "secrets" in config["framework"]
    assert config["directory"] == ["."]
    assert config.get("soft-fail") is not True

    # Then every stack-wide skip is explained in docs/decisions.md
    decisions = _decisions(repo_root)
    for check_id in config.get("skip-check", []):
        assert f"`{check_id}`" in decisions, f"{check_id} is skipped without a recorded reason"

    # And every skip on a resource carries its reason
    for resource_id, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), resource_id
            assert len(str(skip.get("comment", "")).strip()) >= 40, (resource_id, skip["id"])


def test_bandit_skips_are_documented(repo_root: Path) -> None:
    # Given the bandit skips of the Makefile
    makefile = (repo_root / "Makefile").read_text(encoding="utf-8")
    skips = re.findall(r"^BANDIT(?:_DEV)?_SKIPS := (.+)$", makefile, re.M)
    assert len(skips) == 2
    decisions = _decisions(repo_root)

    # Then each is explained next to it and in docs/decisions.md
    for check_id in {c for line in skips for c in line.split(",")}:
        assert re.search(rf"^#\s+(\S+/)?{check_id}\b", makefile, re.M), check_id
        assert f"`{check_id}`" in decisions, check_id


def test_make_test_runs_the_pinned_scanners(repo_root: Path) -> None:
    makefile = (repo_root / "Makefile").read_text(encoding="utf-8")
    # `make test` depends on `make scan`, which runs checkov and bandit on production code and
    # on the developer tools
    (test_prerequisites,) = re.findall(r"^test: ([^#\n]*)", makefile, re.M)
    assert "scan" in test_prerequisites.split()
    (scan_recipe,) = re.findall(r"^scan:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert ".venv-scan/bin/checkov" in scan_recipe
    assert "bandit -q -r layers functions" in scan_recipe
    assert "bandit -q -r local bench" in scan_recipe
    # And both are pinned
    scan_requirements = (repo_root / "requirements-scan.txt").read_text(encoding="utf-8")
    assert re.search(r"^checkov==\d+\.\d+\.\d+$", scan_requirements, re.M)
    dev_requirements = (repo_root / "requirements-dev.txt").read_text(encoding="utf-8")
    assert re.search(r"^bandit==\d+\.\d+\.\d+$", dev_requirements, re.M)


# ------------------------------------------------------------------------------ README


def test_readme_has_a_security_model(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert "## Security model" in readme
    section = readme[readme.index("## Security model") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    for fact in ("MerchantPrincipalArns", "AlarmTopicArn", "WafWebAclArn", "checkov", "bandit"):
        assert fact in section, fact


def test_the_invoice_space_alarm_watches_every_terminal_at_the_configured_share(
    template: dict[str, Any],
) -> None:
    # Given the alarm on the reserved share of the terminals' invoice suffixes
    alarm = template["Resources"]["InvoiceSpaceAlarm"]["Properties"]
    (query,) = alarm["Metrics"]
    # Then it takes the highest share of any terminal, by the metric the allocator emits
    expression = query["Expression"]
    assert expression.startswith("SELECT MAX(InvoiceSpaceUsedPercent) FROM SCHEMA(Payments,")
    assert "Terminal" in expression
    source = (REPO_ROOT / "layers/payments/payments/aws/telemetry.py").read_text()
    assert 'name="InvoiceSpaceUsedPercent"' in source
    # And it fires at the stack parameter's share (80% by default)
    assert alarm["Threshold"] == {"Ref": "InvoiceSpaceAlarmPercent"}
    assert template["Parameters"]["InvoiceSpaceAlarmPercent"]["Default"] == 80
    # And the window the suffixes are held for is a parameter every function gets
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["INVOICE_SUFFIX_WINDOW_DAYS"] == {"Ref": "InvoiceSuffixWindowDays"}
    assert template["Parameters"]["InvoiceSuffixWindowDays"]["Default"] == 400
