"""Checks on template.yaml for charge search (issue 13): the one new index, the route and the
charges function's right to read the index and the page's charges."""

from __future__ import annotations

from typing import Any

from cfn_yaml import api_events, api_of, function_statements

from payments.aws.charge_store import LIST_INDEX

INDEX_ARN = {"Fn::Sub": "${PaymentsTable.Arn}/index/ChargeListIndex"}


def _table(template: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"]["PaymentsTable"]["Properties"]
    return properties


def test_the_charge_list_index_is_keys_only_on_written_once_keys(template: dict[str, Any]) -> None:
    # Given the payments table's indexes
    table = _table(template)
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    # Then the store's index exists: chargeList, then chargeSort ("<createdAt>#<id>"), keys only
    index = indexes[LIST_INDEX]
    assert index["KeySchema"] == [
        {"AttributeName": "chargeList", "KeyType": "HASH"},
        {"AttributeName": "chargeSort", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    # And both keys are declared strings
    attributes = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert attributes["chargeList"] == attributes["chargeSort"] == "S"


def test_get_charges_is_an_iam_signed_route_of_the_charges_function(
    functions: dict[str, dict[str, Any]],
) -> None:
    # Given every API route of the template
    routes = {
        (e["Method"].upper(), e["Path"]): (function_id, e)
        for function_id, function in functions.items()
        for _, e in api_events(function)
    }
    # Then GET /charges is served by the charges function, on the API, without opting out of IAM
    function_id, event = routes[("GET", "/charges")]
    assert function_id == "ChargesFunction"
    assert api_of(event) == "MerchantApi"
    assert event.get("Auth", {}).get("Authorizer", "AWS_IAM") == "AWS_IAM"


def test_the_charges_function_may_query_the_index_and_batch_get_nothing_more(
    template: dict[str, Any],
) -> None:
    # Given the charges function's statements on the table
    statements = [
        s
        for s in function_statements(template, "ChargesFunction")
        if any(str(a).startswith("dynamodb:") for a in s["Action"])
    ]
    (statement,) = statements
    # Then it may Query the new index and BatchGetItem the page's charges
    assert INDEX_ARN in statement["Resource"]
    assert {"dynamodb:Query", "dynamodb:BatchGetItem"} <= set(statement["Action"])
    # And no other index, no Scan and no batch write
    indexes = [r for r in statement["Resource"] if "/index/" in str(r)]
    assert indexes == [INDEX_ARN]
    assert not set(statement["Action"]) & {
        "dynamodb:Scan",
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteItem",
    }
