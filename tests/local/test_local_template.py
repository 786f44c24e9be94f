"""local.template: the YAML loader, routes, parameter defaults and environment resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.apigw.integration import match_route
from local.template import (
    Route,
    TemplateError,
    api_routes,
    function_environment,
    load_template,
    parameter_defaults,
    resolve,
)

REPO_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def test_short_form_tags_become_long_form(tmp_path: Path) -> None:
    # Given a template using each kind of short-form intrinsic
    path = tmp_path / "t.yaml"
    path.write_text(
        "A: !Ref Thing\n"
        "B: !Sub 'x-${Thing}'\n"
        "C: !GetAtt Table.Arn\n"
        "D: !Join [',', [a, b]]\n"
        "E: !If [Cond, !Ref X, !Ref AWS::NoValue]\n"
        "F: !Condition IsProd\n"
        "G: !Sub ['${A}', {A: !Ref B}]\n"
    )

    # When it is loaded
    loaded = load_template(path)

    # Then every tag is the long form CloudFormation uses
    assert loaded["A"] == {"Ref": "Thing"}
    assert loaded["B"] == {"Fn::Sub": "x-${Thing}"}
    assert loaded["C"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert loaded["D"] == {"Fn::Join": [",", ["a", "b"]]}
    assert loaded["E"] == {"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]}
    assert loaded["F"] == {"Condition": "IsProd"}
    assert loaded["G"] == {"Fn::Sub": ["${A}", {"A": {"Ref": "B"}}]}


def test_unknown_tags_map_to_fn_tag(fixture_template: dict[str, Any]) -> None:
    # Given the fixture's output using a tag CloudFormation does not have
    # Then it still loads, as {"Fn::MyTag": ...}
    assert fixture_template["Outputs"]["Custom"]["Value"] == {"Fn::MyTag": {"a": 1}}


def test_a_non_mapping_document_is_rejected(tmp_path: Path) -> None:
    # Given a YAML file that is a list
    path = tmp_path / "t.yaml"
    path.write_text("- a\n- b\n")
    # When / Then loading it fails clearly
    with pytest.raises(TemplateError, match="not a YAML mapping"):
        load_template(path)


def test_routes_carry_function_settings_and_auth(fixture_template: dict[str, Any]) -> None:
    # Given the fixture template (Globals: Timeout 2, MemorySize 256, a layer; API default IAM)
    # When its routes are read
    routes = {(r.method, r.resource): r for r in api_routes(fixture_template)}

    # Then only Api and HttpApi events are routes, with Globals applied and per-function
    # overrides kept
    assert set(routes) == {
        ("POST", "/echo/{thing}"),
        ("GET", "/items/{itemId}"),
        ("GET", "/items/special"),
        ("ANY", "/behave/{mode}"),
        ("ANY", "/public/{proxy+}"),
        ("GET", "/other"),
        ("POST", "/v2/echo/{thing}"),
    }
    # And an HttpApi event's route says so (payload 2.0 events), with its API's default auth
    http_echo = routes[("POST", "/v2/echo/{thing}")]
    assert (http_echo.http_api, http_echo.auth) == (True, "AWS_IAM")
    assert not any(r.http_api for key, r in routes.items() if key != ("POST", "/v2/echo/{thing}"))
    echo = routes[("POST", "/echo/{thing}")]
    assert echo.function_id == "EchoFunction"
    assert echo.code_uri == "functions/echo/"
    assert echo.handler == "app.lambda_handler"
    assert (echo.timeout, echo.memory) == (2, 256)
    assert echo.layers == ("layers/echo/",)
    assert routes[("GET", "/other")].timeout == 7
    # And the API's DefaultAuthorizer applies unless the route opts out
    assert echo.auth == "AWS_IAM"
    assert routes[("ANY", "/public/{proxy+}")].auth == "NONE"


def test_routes_are_ordered_most_specific_first(fixture_template: dict[str, Any]) -> None:
    # Given routes /items/special and /items/{itemId}
    resources = [route.resource for route in api_routes(fixture_template)]
    # Then the literal one comes before the parameterised one
    assert resources.index("/items/special") < resources.index("/items/{itemId}")


@pytest.mark.parametrize(
    ("resource", "path", "expected"),
    [
        ("/charges", "/charges", {}),
        ("/charges", "/charges/", {}),
        ("/charges/{chargeId}", "/charges/ch_1", {"chargeId": "ch_1"}),
        ("/charges/{chargeId}/capture", "/charges/ch_1/capture", {"chargeId": "ch_1"}),
        ("/charges/{chargeId}", "/charges", None),
        ("/charges/{chargeId}", "/charges/a/b", None),
        ("/charges", "/Charges", None),
        ("/files/{path+}", "/files/a/b/c", {"path": "a/b/c"}),
        ("/files/{path+}", "/files", None),
    ],
)
def test_route_matching(resource: str, path: str, expected: dict[str, str] | None) -> None:
    # Given a route on `resource`
    route = Route("F", "E", "GET", resource, "functions/f/", "app.h", 3, 128, "NONE")
    # When a request path is matched against it
    # Then the path parameters (or None) are what API Gateway would give
    assert route.match(path) == expected


def test_parameter_defaults_are_strings(fixture_template: dict[str, Any]) -> None:
    # Given parameters with defaults, one a CommaDelimitedList
    # Then their defaults come back as strings
    assert parameter_defaults(fixture_template) == {
        "Greeting": "hello",
        "StageName": "v1",
        "Flags": "a,b",
    }


def test_function_environment_merges_globals_and_resolves(
    fixture_template: dict[str, Any],
) -> None:
    # Given parameters and the physical names of the table and secret
    params = {**parameter_defaults(fixture_template), "Greeting": "salem"}
    names = {"EchoTable": "local-EchoTable", "EchoSecret": "local-EchoSecret"}

    # When the echo function's environment is resolved
    env = function_environment(fixture_template, "EchoFunction", params, names)

    # Then Ref, Sub (with a pseudo parameter) and literals resolve, and the function's own
    # variables override Globals
    assert env == {
        "GREETING": "salem",
        "TABLE_NAME": "local-EchoTable",
        "SECRET_ID": "local-EchoSecret",
        "LABEL": "salem-us-east-1",
        "LITERAL": "plain",
        "OVERRIDDEN": "own",
    }
    # And a function without its own variables keeps the global value
    other = function_environment(fixture_template, "OtherFunction", params, names)
    assert other["OVERRIDDEN"] == "global"


def test_unresolvable_references_fail_loudly(fixture_template: dict[str, Any]) -> None:
    # Given no physical names for the table and secret
    # When / Then resolving the environment names the missing reference
    with pytest.raises(TemplateError, match="EchoTable"):
        function_environment(fixture_template, "EchoFunction", {"Greeting": "x"}, {})
    with pytest.raises(TemplateError, match="cannot resolve"):
        resolve({"Fn::GetAZs": ""}, {}, {})
    with pytest.raises(TemplateError, match="no AWS::Serverless::Function"):
        function_environment(fixture_template, "Nope", {}, {})


def test_sub_supports_variable_maps_and_escapes() -> None:
    # Given Fn::Sub in its list form and an escaped ${!Literal}
    value = {"Fn::Sub": ["${Name}/${Region}/${!Kept}", {"Name": {"Ref": "P"}, "Region": "x"}]}
    # When resolved
    # Then the map's variables are used and the escape is kept literally
    assert resolve(value, {"P": "p"}, {}) == "p/x/${Kept}"


@pytest.mark.skipif(not REPO_TEMPLATE.exists(), reason="template.yaml not written yet")
def test_the_repository_template_yields_routes_and_environment() -> None:
    # Given the project's own template.yaml
    template = load_template(REPO_TEMPLATE)
    # When routes and each function's environment are read with made-up resource names
    routes = api_routes(template)
    names = {"PaymentsTable": "t", "EpayCredentialsSecret": "s", "PaymentsBus": "b"}
    # Then there are routes, each with an app.py handler and a timeout within API Gateway's 29 s
    assert routes
    for route in routes:
        assert route.handler.startswith("app.")
        assert 0 < route.timeout <= 29
        params = {**parameter_defaults(template), "PublicBaseUrl": "https://pay.example.com"}
        env = function_environment(template, route.function_id, params, names)
        assert env["PAYMENTS_TABLE"] == "t"
        assert env["EPAY_SECRET_ID"] == "s"


def test_the_repository_template_routes_the_card_api_and_its_public_page() -> None:
    # Given the project's own template.yaml's routes
    routes = api_routes(load_template(REPO_TEMPLATE))
    by_key = {(r.method, r.resource): r for r in routes}

    # Then the merchant card routes are IAM-signed routes of the cards function
    for key in (
        ("POST", "/card-setups"),
        ("GET", "/card-setups/{setupId}"),
        ("GET", "/accounts/{accountId}/cards"),
        ("DELETE", "/accounts/{accountId}/cards/{cardId}"),
    ):
        assert by_key[key].function_id == "CardsFunction", key
        assert by_key[key].auth == "AWS_IAM", key
        assert by_key[key].code_uri == "functions/cards/"
        assert by_key[key].http_api, key  # the merchant API: an HTTP API (payload 2.0)
    # And the setup page is public, served by its own function with the layer
    page = by_key[("GET", "/card-setups/{setupId}/page")]
    assert (page.function_id, page.auth, page.http_api) == ("CardPagesFunction", "NONE", False)
    assert page.code_uri == "functions/card_pages/"
    assert page.layers == ("layers/payments/",)

    # And a request reaches the route API Gateway would pick
    found = match_route(routes, "GET", "/card-setups/cs_1/page")
    assert found is not None
    assert (found[0].function_id, found[1]) == ("CardPagesFunction", {"setupId": "cs_1"})
    found = match_route(routes, "GET", "/card-setups/cs_1")
    assert found is not None
    assert (found[0].function_id, found[1]) == ("CardsFunction", {"setupId": "cs_1"})
    found = match_route(routes, "DELETE", "/accounts/acc-1/cards/c1")
    assert found is not None
    assert found[1] == {"accountId": "acc-1", "cardId": "c1"}
    assert match_route(routes, "POST", "/card-setups/cs_1/page") is None


def test_the_repository_template_gives_every_function_the_widget_url() -> None:
    # Given the template's defaults (EpayWidgetUrl empty: the layer picks ePay's for EPAY_ENV)
    template = load_template(REPO_TEMPLATE)
    params = {**parameter_defaults(template), "PublicBaseUrl": "https://pay.example.com"}
    names = {"PaymentsTable": "t", "EpayCredentialsSecret": "s", "PaymentsBus": "b"}
    for function_id in ("CardsFunction", "CardPagesFunction", "ChargesFunction"):
        env = function_environment(template, function_id, params, names)
        assert env["EPAY_WIDGET_URL"] == "", function_id
    # And a given URL reaches the functions
    params["EpayWidgetUrl"] = "https://epay.homebank.kz/payform/payment-api.js"
    env = function_environment(template, "CardPagesFunction", params, names)
    assert env["EPAY_WIDGET_URL"] == params["EpayWidgetUrl"]
