"""Checks on template.yaml for saved cards (issue 12): the account's cards index, the merchant
card routes (IAM), the public card setup page (throttled, in the resource policy, only SETUP#
items), the functions that now read or write cards, and the widget's URL."""

from __future__ import annotations

import re
from typing import Any

from cfn_yaml import api_events, api_of, function_statements, ref_target

CARD_ROUTES = {
    ("POST", "/card-setups"),
    ("GET", "/card-setups/{setupId}"),
    ("GET", "/accounts/{accountId}/cards"),
    ("DELETE", "/accounts/{accountId}/cards/{cardId}"),
}
PAGE_ROUTE = ("GET", "/card-setups/{setupId}/page")
PER_ITEM_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
}
# Functions that refuse a removed card: each must be able to read CARD#<id>.
CARD_READERS = (
    "ChargesFunction",
    "SubscriptionsFunction",
    "RenewalWorkerFunction",
    "PostLinkFunction",
    "ChargeEventsFunction",
)


def _routes(functions: dict[str, dict[str, Any]]) -> dict[tuple[str, str], tuple[str, Any]]:
    return {
        (e["Method"].upper(), e["Path"]): (function_id, e)
        for function_id, function in functions.items()
        for _, e in api_events(function)
    }


def _table_statements(template: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    """The function's statements on the payments table's items (not its stream)."""
    return [
        s
        for s in function_statements(template, function_id)
        if any(ref_target(r) == "PaymentsTable" for r in s["Resource"])
        and not any("Stream" in str(r) or "/stream/" in str(r) for r in s["Resource"])
    ]


def _may(statement: dict[str, Any], action: str, key: str) -> bool:
    """True when the statement allows `action` on an item whose partition key is `key`."""
    if action not in statement["Action"]:
        return False
    condition = statement.get("Condition", {})
    prefixes = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
    if prefixes is None:
        return "ForAllValues:StringLike" not in condition  # unrestricted by key
    return any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), key) for p in prefixes)


def _allows(template: dict[str, Any], function_id: str, action: str, key: str) -> bool:
    return any(_may(s, action, key) for s in _table_statements(template, function_id))


# ------------------------------------------------------------------------------ table


def test_table_has_the_sparse_account_cards_index(template: dict[str, Any]) -> None:
    table = template["Resources"]["PaymentsTable"]["Properties"]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    # Then an account's cards are one Query, newest first: cardAccount, then cardSort
    # ("<createdAt ISO>#<cardId>"), with every attribute projected
    cards = indexes["AccountCardsIndex"]
    assert cards["KeySchema"] == [
        {"AttributeName": "cardAccount", "KeyType": "HASH"},
        {"AttributeName": "cardSort", "KeyType": "RANGE"},
    ]
    assert cards["Projection"] == {"ProjectionType": "ALL"}
    # And both keys are declared as strings
    attributes = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert attributes["cardAccount"] == attributes["cardSort"] == "S"
    # And every declared attribute is a key of the table or an index (CloudFormation refuses
    # unused definitions)
    used = {k["AttributeName"] for k in table["KeySchema"]} | {
        k["AttributeName"] for i in table["GlobalSecondaryIndexes"] for k in i["KeySchema"]
    }
    assert set(attributes) == used


# ------------------------------------------------------------------------------ merchant API


def test_card_routes_are_iam_signed_and_served_by_the_cards_function(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    routes = _routes(functions)
    assert template["Resources"]["MerchantApi"]["Properties"]["Auth"]["DefaultAuthorizer"] == (
        "AWS_IAM"
    )
    for key in CARD_ROUTES:
        function_id, event = routes[key]
        assert function_id == "CardsFunction", key
        assert api_of(event) == "MerchantApi", key
        # Then none opts out of IAM
        assert event.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM", key
    # And the function serves nothing else
    assert {k for k, (f, _) in routes.items() if f == "CardsFunction"} == CARD_ROUTES


def test_cards_function_has_per_item_actions_on_the_table_and_its_index(
    template: dict[str, Any],
) -> None:
    statements = function_statements(template, "CardsFunction")
    table = [s for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])]
    (statement,) = table
    assert set(statement["Action"]) == PER_ITEM_ACTIONS
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["PaymentsTable", "Arn"]},
        {"Fn::Sub": "${PaymentsTable.Arn}/index/AccountCardsIndex"},
    ]
    # And it reads the ePay secret (card list, deactivation, page token key), nothing else
    others = {
        (a, ref_target(r))
        for s in statements
        if s is not statement
        for a in s["Action"]
        for r in s["Resource"]
    }
    assert others == {("secretsmanager:GetSecretValue", "EpayCredentialsSecret")}


# ------------------------------------------------------------------------------ the public page


def test_card_setup_page_is_public_throttled_and_allowed_by_the_resource_policy(
    template: dict[str, Any], functions: dict[str, dict[str, Any]]
) -> None:
    # Given the page route
    function_id, event = _routes(functions)[PAGE_ROUTE]
    # Then it is the card pages function's only route, and public
    assert function_id == "CardPagesFunction"
    assert [k for k, (f, _) in _routes(functions).items() if f == function_id] == [PAGE_ROUTE]
    assert event["Auth"] == {"Authorizer": "NONE"}
    api = template["Resources"]["PaymentsApi"]["Properties"]
    # And it has its own lower throttle, like the 3-D Secure page
    settings = {(s["ResourcePath"], s["HttpMethod"]): s for s in api["MethodSettings"]}
    page = settings[("/~1card-setups~1{setupId}~1page", "GET")]
    three_ds = settings[("/~1charges~1{chargeId}~13ds", "GET")]
    for limit in ("ThrottlingRateLimit", "ThrottlingBurstLimit", "MetricsEnabled"):
        assert page[limit] == three_ds[limit], limit
    assert (page["ThrottlingRateLimit"], page["ThrottlingBurstLimit"]) == (20, 40)
    # And the resource policy lets anyone call it (an unsigned call needs an explicit Allow)
    (public,) = [
        s
        for s in api["Auth"]["ResourcePolicy"]["CustomStatements"]
        if s.get("Sid") == "PublicRoutes"
    ]
    assert "execute-api:/*/GET/card-setups/*/page" in public["Resource"]
    # And only the page: the merchant's card setup routes stay signed
    assert not any("card-setups" in r and not r.endswith("/page") for r in public["Resource"])


def test_card_pages_function_touches_only_card_setups(template: dict[str, Any]) -> None:
    statements = function_statements(template, "CardPagesFunction")
    table = [s for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])]
    (statement,) = table
    # Then it may get and put setup items, nothing else of the table, and only by key
    assert statement["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert [ref_target(r) for r in statement["Resource"]] == ["PaymentsTable"]
    assert statement["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["SETUP#*"]},
        "Null": {"dynamodb:LeadingKeys": "false"},
    }
    # And it reads the ePay secret (the widget's token, the page token key)
    others = [s for s in statements if s is not statement]
    assert [(s["Action"], [ref_target(r) for r in s["Resource"]]) for s in others] == [
        (["secretsmanager:GetSecretValue"], ["EpayCredentialsSecret"])
    ]


# ------------------------------------------------------------------------------ other functions


def test_every_function_that_refuses_a_removed_card_can_read_it(template: dict[str, Any]) -> None:
    for function_id in CARD_READERS:
        assert _allows(template, function_id, "dynamodb:GetItem", "CARD#c1"), function_id


def test_a_succeeding_card_setup_can_be_written_by_postlink_and_the_reconciler(
    template: dict[str, Any],
) -> None:
    # One transaction: the setup and the card (Put), a paying setup's charge and its history
    # item (Put), the invoice pointed at the charge (Update); postLink reads the setup first
    writes = [
        ("dynamodb:GetItem", "SETUP#cs_1"),
        ("dynamodb:PutItem", "SETUP#cs_1"),
        ("dynamodb:PutItem", "CARD#c1"),
        ("dynamodb:PutItem", "CHARGE#ch_1"),
        ("dynamodb:UpdateItem", "INVOICE#000000000001"),
    ]
    for function_id in ("PostLinkFunction", "ReconcilerFunction"):
        for action, key in writes:
            assert _allows(template, function_id, action, key), (function_id, action, key)
    # And postLink still may not create an invoice or touch anything else of a setup's account
    assert not _allows(template, "PostLinkFunction", "dynamodb:PutItem", "INVOICE#000000000001")
    assert not _allows(template, "PostLinkFunction", "dynamodb:UpdateItem", "CARD#c1")
    assert not _allows(template, "PostLinkFunction", "dynamodb:PutItem", "SUB#s1")


def test_reconciler_finds_due_setups_and_writes_them_in_transactions(
    template: dict[str, Any],
) -> None:
    statements = _table_statements(template, "ReconcilerFunction")
    actions = {a for s in statements for a in s["Action"]}
    assert actions == PER_ITEM_ACTIONS
    resources = [r for s in statements for r in s["Resource"]]
    # SDUE#0..1 are shards of the DueIndex, beside the charges' and refunds'
    assert {"Fn::Sub": "${PaymentsTable.Arn}/index/DueIndex"} in resources


def test_charge_events_may_record_cards_and_find_their_subscriptions(
    template: dict[str, Any],
) -> None:
    allowed = [
        ("dynamodb:GetItem", "CARD#c1"),
        ("dynamodb:PutItem", "CARD#c1"),
        ("dynamodb:Query", "ACCOUNT#acc-1"),
        ("dynamodb:BatchGetItem", "SUB#s1"),
    ]
    for action, key in allowed:
        assert _allows(template, "ChargeEventsFunction", action, key), (action, key)
    refused = [
        ("dynamodb:PutItem", "CHARGE#ch_1"),
        ("dynamodb:PutItem", "SUB#s1"),
        ("dynamodb:GetItem", "SETUP#cs_1"),
        ("dynamodb:Query", "CARD#c1"),
    ]
    for action, key in refused:
        assert not _allows(template, "ChargeEventsFunction", action, key), (action, key)


def test_three_ds_function_is_unchanged_by_cards(template: dict[str, Any]) -> None:
    assert not _allows(template, "ThreeDSFunction", "dynamodb:GetItem", "CARD#c1")
    assert not _allows(template, "ThreeDSFunction", "dynamodb:GetItem", "SETUP#cs_1")


# ------------------------------------------------------------------------------ configuration


def test_widget_url_is_a_global_parameter_defaulting_by_epay_env(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["EPAY_WIDGET_URL"] == {"Ref": "EpayWidgetUrl"}
    parameter = template["Parameters"]["EpayWidgetUrl"]
    # Empty: the layer picks ePay's script for EPAY_ENV (named in the description)
    assert parameter["Default"] == ""
    assert "https://test-epay.epayment.kz/payform/payment-api.js" in parameter["Description"]
    assert "https://epay.homebank.kz/payform/payment-api.js" in parameter["Description"]
    pattern = re.compile(parameter["AllowedPattern"])
    for good in ("", "https://test-epay.epayment.kz/payform/payment-api.js"):
        assert pattern.fullmatch(good), good
    for bad in ("http://epay.example/payment-api.js", "payment-api.js", "https://a b", "https://"):
        assert not pattern.fullmatch(bad), bad


def test_outputs_name_the_card_functions(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert ref_target(outputs["CardsFunctionName"]["Value"]) == "CardsFunction"
    assert ref_target(outputs["CardPagesFunctionName"]["Value"]) == "CardPagesFunction"
