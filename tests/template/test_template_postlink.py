"""Checks on template.yaml for ePay's public postLink (issue 4), served by PostLinkFunction's
Lambda function URL rather than the REST API (issue 16)."""

from __future__ import annotations

from typing import Any

from cfn_yaml import api_events, function_property, ref_target

from payments.charges import links

# The functions that send postLink URLs to ePay: the charge path (ChargeService, also renewal
# charges) and the card setup page (its token and the widget's payment object).
POSTLINK_SENDERS = ("ChargesFunction", "RenewalWorkerFunction", "CardPagesFunction")


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in function["Properties"]["Policies"] for s in p["Statement"]]


def _env(function: dict[str, Any]) -> dict[str, Any]:
    return dict(function["Properties"].get("Environment", {}).get("Variables", {}))


def test_postlink_is_a_public_function_url(functions: dict[str, dict[str, Any]]) -> None:
    # Given the postLink function
    properties = functions["PostLinkFunction"]["Properties"]

    # Then it has a function URL without IAM (ePay cannot sign; the function verifies
    # secret_hash and the charge's fields, and settles from the status API)
    assert properties["FunctionUrlConfig"] == {"AuthType": "NONE"}
    # And no REST API event: the postLink costs no API Gateway request
    assert list(api_events(functions["PostLinkFunction"])) == []
    assert "Events" not in properties


def test_postlink_paths_are_the_layers(functions: dict[str, dict[str, Any]]) -> None:
    # Given the paths the local stack serves the function URL at / Then they are the layer's
    metadata = functions["PostLinkFunction"]["Metadata"]
    assert metadata["FunctionUrlPaths"] == [links.POSTLINK_PATH, links.FAILURE_POSTLINK_PATH]


def test_postlink_paths_are_not_rest_routes(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    # Given every REST route of the template
    paths = {e["Path"] for f in functions.values() for _, e in api_events(f)}
    # Then no postLink path is among them
    assert not {p for p in paths if p.startswith("/epay")}
    # And the API's resource policy and throttles do not name them either
    api = template["Resources"]["PaymentsApi"]["Properties"]
    statements = api["Auth"]["ResourcePolicy"]["CustomStatements"]
    public = next(s for s in statements if isinstance(s, dict) and s.get("Sid") == "PublicRoutes")
    assert not [r for r in public["Resource"] if "epay" in r]
    assert not [s for s in api["MethodSettings"] if "epay" in s["ResourcePath"]]


def test_postlink_senders_get_the_function_url(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    # Given the functions that send postLink URLs to ePay
    for function_id in POSTLINK_SENDERS:
        # Then each builds them under the postLink function's URL (SAM's PostLinkFunctionUrl)
        assert _env(functions[function_id])["POSTLINK_BASE_URL"] == {
            "Fn::GetAtt": ["PostLinkFunctionUrl", "FunctionUrl"]
        }, function_id
    # And the variable is never global, nor on the postLink function itself: it cannot depend on
    # its own URL (a circular dependency)
    assert "POSTLINK_BASE_URL" not in template["Globals"]["Function"]["Environment"]["Variables"]
    assert "POSTLINK_BASE_URL" not in _env(functions["PostLinkFunction"])
    # And the stack's outputs name the URL (ePay's cabinet may need it)
    assert template["Outputs"]["PostLinkUrl"]["Value"] == {
        "Fn::GetAtt": ["PostLinkFunctionUrl", "FunctionUrl"]
    }


def test_postlink_function_url_is_throttled_by_reserved_concurrency(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    # Given the function URL (no WAF or API Gateway throttle in front of it)
    properties = functions["PostLinkFunction"]["Properties"]
    # Then its reserved concurrency is a parameter, small by default
    assert ref_target(properties["ReservedConcurrentExecutions"]) == "PostLinkConcurrency"
    parameter = template["Parameters"]["PostLinkConcurrency"]
    assert parameter["Type"] == "Number"
    assert 10 <= parameter["Default"] <= 50
    assert parameter["MinValue"] >= 1
    # And refused postLinks (429) are watched
    alarm = template["Resources"]["PostLinkThrottlesAlarm"]["Properties"]
    assert alarm["MetricName"] == "Throttles"
    assert ref_target(alarm["Dimensions"][0]["Value"]) == "PostLinkFunction"


def test_postlink_function_is_least_privilege_and_short(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    function = functions["PostLinkFunction"]
    statements = _statements(function)
    actions = {a for s in statements for a in s["Action"]}

    # Then it reads and writes items of the table and reads the secret, nothing else (the charge.*
    # events of the charges it settles come from the table's stream, ChargeEventsFunction)
    assert actions == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "secretsmanager:GetSecretValue",
    }
    resources = {ref_target(r) for s in statements for r in s["Resource"]}
    assert resources == {"PaymentsTable", "EpayCredentialsSecret"}
    # And it answers ePay quickly (the status check has at most 8 s)
    assert function_property(template, function, "Timeout") <= 15


def test_waf_association_is_optional(template: dict[str, Any]) -> None:
    assert template["Parameters"]["WafWebAclArn"]["Default"] == ""
    association = template["Resources"]["PaymentsApiWafAssociation"]
    assert association["Type"] == "AWS::WAFv2::WebACLAssociation"
    assert association["Condition"] == "WafEnabled"
    assert ref_target(association["Properties"]["WebACLArn"]) == "WafWebAclArn"
