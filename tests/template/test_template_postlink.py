"""Checks on template.yaml for the public postLink routes (issue 4)."""

from __future__ import annotations

from typing import Any

from cfn_yaml import api_events, function_property, ref_target


def _statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in function["Properties"]["Policies"] for s in p["Statement"]]


def test_postlink_routes_are_public_and_served_by_one_function(
    functions: dict[str, dict[str, Any]],
) -> None:
    # Given the postLink function's API events
    events = {e["Path"]: e for _, e in api_events(functions["PostLinkFunction"])}

    # Then it serves both links, POST only, without IAM (ePay cannot sign)
    assert set(events) == {"/epay/postlink", "/epay/postlink/failure"}
    for event in events.values():
        assert event["Method"] == "POST"
        assert event["Auth"] == {"Authorizer": "NONE"}
        assert ref_target(event["RestApiId"]) == "PaymentsApi"


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
    # And it ends well inside API Gateway's 29 s
    assert function_property(template, function, "Timeout") <= 15


def test_postlink_routes_have_their_own_throttle(template: dict[str, Any]) -> None:
    settings = template["Resources"]["PaymentsApi"]["Properties"]["MethodSettings"]
    by_path = {s["ResourcePath"]: s for s in settings}
    catch_all = by_path["/*"]
    for path in ("/~1epay~1postlink", "/~1epay~1postlink~1failure"):
        setting = by_path[path]
        assert setting["HttpMethod"] == "POST"
        assert 0 < setting["ThrottlingRateLimit"] < catch_all["ThrottlingRateLimit"]
        assert 0 < setting["ThrottlingBurstLimit"] < catch_all["ThrottlingBurstLimit"]


def test_waf_association_is_optional(template: dict[str, Any]) -> None:
    assert template["Parameters"]["WafWebAclArn"]["Default"] == ""
    association = template["Resources"]["PaymentsApiWafAssociation"]
    assert association["Type"] == "AWS::WAFv2::WebACLAssociation"
    assert association["Condition"] == "WafEnabled"
    assert ref_target(association["Properties"]["WebACLArn"]) == "WafWebAclArn"
