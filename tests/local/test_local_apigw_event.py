"""local.apigw without sockets: proxy events, route choice, proxy responses, the Lambda runtime."""

from __future__ import annotations

import base64
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES

import local.apigw
from local.apigw.event import LOCAL_IAM_USER_ARN, build_proxy_event, is_text_content_type
from local.apigw.integration import match_route, parse_proxy_response
from local.apigw.runtime import LambdaContext, invoke, load_handler
from local.template import api_routes

REQUEST_CONTEXT_KEYS = {
    "resourceId",
    "resourcePath",
    "httpMethod",
    "extendedRequestId",
    "requestTime",
    "path",
    "accountId",
    "protocol",
    "stage",
    "domainPrefix",
    "requestTimeEpoch",
    "requestId",
    "identity",
    "domainName",
    "deploymentId",
    "apiId",
}


def _event(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "method": "post",
        "resource": "/charges/{chargeId}/capture",
        "path": "/charges/ch%201/capture",
        "path_parameters": {"chargeId": "ch 1"},
        "headers": {"Content-Type": "application/json"},
        "query": None,
        "body": b'{"amount": "10.00"}',
    }
    arguments.update(overrides)
    return build_proxy_event(**arguments)


def test_event_has_the_rest_api_v1_shape() -> None:
    # Given a POST with a JSON body at a fixed time
    now = datetime(2026, 11, 28, 20, 31, 37, 123000, tzinfo=UTC)

    # When the proxy event is built
    event = _event(now=now, stage="v1", request_id="req-1")

    # Then it has every top-level key of a REST API proxy event, with API Gateway's values
    assert set(event) == {
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    }
    assert event["resource"] == "/charges/{chargeId}/capture"
    assert event["path"] == "/charges/ch%201/capture"  # REST APIs keep the path encoded
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"chargeId": "ch 1"}
    assert event["stageVariables"] is None
    assert event["body"] == '{"amount": "10.00"}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert set(context) == REQUEST_CONTEXT_KEYS
    assert context["resourcePath"] == "/charges/{chargeId}/capture"
    assert context["httpMethod"] == "POST"
    assert context["path"] == "/v1/charges/ch%201/capture"
    assert context["stage"] == "v1"
    assert context["requestId"] == "req-1"
    assert context["requestTime"] == "28/Nov/2026:20:31:37 +0000"
    assert context["requestTimeEpoch"] == 1795897897123
    assert context["protocol"] == "HTTP/1.1"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userArn"] is None
    # And the whole event survives a JSON round trip (what Lambda would deliver)
    assert json.loads(json.dumps(event)) == event


def test_empty_query_and_path_parameters_are_null() -> None:
    # Given a request without query string and without path parameters
    event = _event(query=None, path_parameters={}, body=None, resource="/charges", path="/charges")
    # Then the maps are null, like API Gateway sends them, and so is the body
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False


def test_repeated_query_parameters_and_headers_are_multi_valued() -> None:
    # Given repeated query parameters (raw string) and a repeated header
    headers = [("Accept", "text/html"), ("Accept", "application/json"), ("X-One", "1")]

    # When the event is built
    event = _event(query="status=a&status=b&q=x%20y&empty=", headers=headers, body=None)

    # Then the single-value maps hold the last value and the multi-value maps all of them
    assert event["queryStringParameters"] == {"status": "b", "q": "x y", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "status": ["a", "b"],
        "q": ["x y"],
        "empty": [""],
    }
    assert event["headers"]["Accept"] == "application/json"
    assert event["multiValueHeaders"]["Accept"] == ["text/html", "application/json"]
    assert event["multiValueHeaders"]["X-One"] == ["1"]


def test_gateway_headers_are_added_when_missing() -> None:
    # Given a request that carries only a content type
    event = _event(domain_name="127.0.0.1:3000", source_ip="10.0.0.7")
    # Then API Gateway's own headers are there, derived from the domain and the caller
    headers = event["headers"]
    assert headers["Host"] == "127.0.0.1:3000"
    assert headers["X-Forwarded-For"] == "10.0.0.7"
    assert headers["X-Forwarded-Port"] == "3000"
    assert headers["X-Amzn-Trace-Id"].startswith("Root=1-")
    assert event["requestContext"]["domainName"] == "127.0.0.1:3000"
    assert event["requestContext"]["domainPrefix"] == "127"


@pytest.mark.parametrize(
    ("content_type", "body", "expected_base64"),
    [
        ("application/json", '{"a": "ü"}'.encode(), False),
        ("application/json; charset=utf-8", b"{}", False),
        ("text/html", b"<p>hi</p>", False),
        ("application/x-www-form-urlencoded", b"PaRes=abc%2B&MD=1", False),
        ("application/problem+json", b"{}", False),
        (None, b"plain", False),
        ("application/octet-stream", b"plain but declared binary", True),
        ("image/png", b"\x89PNG\r\n", True),
        ("application/json", b"\xff\xfe not utf-8", True),
    ],
)
def test_binary_bodies_are_base64(
    content_type: str | None, body: bytes, expected_base64: bool
) -> None:
    # Given a body of some content type
    headers = {"Content-Type": content_type} if content_type else {}

    # When the event is built
    event = _event(headers=headers, body=body)

    # Then text travels as text and binary (or invalid UTF-8) as base64, flagged
    assert event["isBase64Encoded"] is expected_base64
    if expected_base64:
        assert base64.b64decode(event["body"]) == body
    else:
        assert event["body"] == body.decode("utf-8")


def test_iam_routes_get_the_local_fake_identity() -> None:
    # Given an AWS_IAM route (the local stack verifies no signature)
    event = _event(iam_auth=True)
    identity = event["requestContext"]["identity"]
    # Then the identity names the fixed local caller
    assert identity["userArn"] == LOCAL_IAM_USER_ARN == "arn:aws:iam::000000000000:user/local"
    assert identity["caller"]
    assert identity["accountId"] == "000000000000"
    assert identity["cognitoIdentityId"] is None


def test_custom_domain_events_keep_the_stage_out_of_the_context_path() -> None:
    # Given the local API (served at the root, like a custom domain)
    event = _event(stage="v1", custom_domain=True)
    # Then requestContext.path is the request path, while stage is still reported
    assert event["requestContext"]["path"] == "/charges/ch%201/capture"
    assert event["requestContext"]["stage"] == "v1"


def test_content_type_classification() -> None:
    assert is_text_content_type("text/plain; charset=utf-8")
    assert is_text_content_type("application/vnd.api+json")
    assert not is_text_content_type("multipart/form-data; boundary=x")
    assert not is_text_content_type("application/pdf")


# ---------------------------------------------------------------------------------------- routing


def test_match_route_prefers_literals_and_decodes_parameters(
    fixture_template: dict[str, Any],
) -> None:
    routes = api_routes(fixture_template)
    # Given /items/special and /items/{itemId}
    # When the literal path is asked for, then the literal route wins
    found = match_route(routes, "GET", "/items/special")
    assert found is not None
    assert found[0].resource == "/items/special"
    assert found[1] == {}
    # When another item is asked for, the parameter is decoded (%2F stays inside the segment)
    found = match_route(routes, "get", "/items/a%2Fb%20c")
    assert found is not None
    assert found[0].resource == "/items/{itemId}"
    assert found[1] == {"itemId": "a/b c"}


def test_match_route_handles_any_and_greedy(fixture_template: dict[str, Any]) -> None:
    routes = api_routes(fixture_template)
    # Given ANY /public/{proxy+}
    found = match_route(routes, "DELETE", "/public/a/b/c")
    # Then any method and any depth match, the greedy parameter takes the rest of the path
    assert found is not None
    assert found[0].resource == "/public/{proxy+}"
    assert found[1] == {"proxy": "a/b/c"}


def test_match_route_refuses_unknown_paths_and_methods(fixture_template: dict[str, Any]) -> None:
    routes = api_routes(fixture_template)
    # Given routes for POST /echo/{thing} only
    # Then another method, an unknown path or a partial path finds nothing
    assert match_route(routes, "GET", "/echo/x") is None
    assert match_route(routes, "POST", "/nowhere") is None
    assert match_route(routes, "POST", "/echo") is None
    # And the specific resource's missing method does not fall back to a less specific one
    assert match_route(routes, "POST", "/items/special") is None


# -------------------------------------------------------------------------------------- responses


def test_proxy_response_merges_headers_and_decodes_base64() -> None:
    # Given a proxy response with both header maps and a base64 body
    result = {
        "statusCode": 201,
        "headers": {"X-One": "1", "Set-Cookie": "ignored", "X-Num": 5},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": base64.b64encode(b"\x00\x01").decode(),
        "isBase64Encoded": True,
    }

    # When it is translated
    answer = parse_proxy_response(result)

    # Then multiValueHeaders win for a name in both, values are strings, the body is decoded, and
    # API Gateway's default content type is added
    assert answer.status == 201
    assert ("X-One", "1") in answer.headers
    assert ("X-Num", "5") in answer.headers
    assert [v for k, v in answer.headers if k == "Set-Cookie"] == ["a=1", "b=2"]
    assert ("Content-Type", "application/json") in answer.headers
    assert answer.body == b"\x00\x01"


@pytest.mark.parametrize(
    "result",
    [
        None,
        "a string",
        {"statusCode": 200, "cookies": ["a=1"]},  # v2-only key: REST APIs reject it
        {"statusCode": "abc"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "@@@", "isBase64Encoded": True},
        {"statusCode": 200, "multiValueHeaders": {"X": "not-a-list"}},
    ],
)
def test_malformed_proxy_responses_are_502(result: Any) -> None:
    # Given a handler result API Gateway would call malformed
    answer = parse_proxy_response(result)
    # Then the caller gets API Gateway's 502
    assert answer.status == 502
    assert json.loads(answer.body) == {"message": "Internal server error"}


# ------------------------------------------------------------------------------ context, handlers


def test_context_counts_down_from_the_timeout() -> None:
    # Given a context for a function with a 2 s timeout
    context = LambdaContext(
        function_name="ChargesFunction", memory_limit_in_mb=256, timeout_seconds=2
    )
    # When a little time passes
    first = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    second = context.get_remaining_time_in_millis()
    # Then the remaining time shrinks from about 2000 ms, and the identifiers look like Lambda's
    assert 1900 < first <= 2000
    assert second < first
    assert context.invoked_function_arn.endswith(":function:ChargesFunction")
    assert context.log_group_name == "/aws/lambda/ChargesFunction"
    assert context.function_version == "$LATEST"
    assert context.aws_request_id


def test_handlers_with_the_same_module_name_load_separately() -> None:
    # Given two functions that both have app.py, one importing a layer package
    sys.path.insert(0, str(FIXTURES / "layers" / "echo"))
    try:
        echo = load_handler("functions/echo/", "app.lambda_handler", FIXTURES)
        other = load_handler("functions/other", "app.lambda_handler", FIXTURES)
        again = load_handler(FIXTURES / "functions" / "echo", "app.lambda_handler")
    finally:
        sys.path.remove(str(FIXTURES / "layers" / "echo"))

    # Then each is its own module, never plain `app`, and loading again hits the cache
    assert echo.__module__ != other.__module__
    assert "app" not in {echo.__module__, other.__module__}
    assert sys.modules[echo.__module__].NAME == "echo"
    assert sys.modules[other.__module__].NAME == "other"
    assert again is echo


def test_load_handler_reports_missing_files_and_bad_handlers(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_handler("functions/missing/", "app.lambda_handler", FIXTURES)
    with pytest.raises(ValueError, match=r"module\.function"):
        load_handler("functions/other/", "lambda_handler", FIXTURES)
    with pytest.raises(AttributeError, match="nope"):
        load_handler("functions/other/", "app.nope", FIXTURES)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"iam_auth": True},
        {"body": b"\x00\x01", "headers": {"Content-Type": "image/png"}},
        {"body": None, "query": "a=1&a=2", "path_parameters": None},
    ],
)
def test_events_validate_against_powertools_model(overrides: dict[str, Any]) -> None:
    # Given Powertools' own model of a REST API proxy event (an independent description)
    models = pytest.importorskip("aws_lambda_powertools.utilities.parser.models")
    # When our events are validated against it
    parsed = models.APIGatewayProxyEventModel.model_validate(_event(**overrides))
    # Then they are accepted
    assert parsed.httpMethod == "POST"


def _context(timeout_seconds: float = 2) -> LambdaContext:
    return LambdaContext(
        function_name="EchoFunction", memory_limit_in_mb=128, timeout_seconds=timeout_seconds
    )


def test_invoke_returns_the_handlers_result() -> None:
    # Given a handler that answers from its event and context
    def handler(event: dict[str, Any], context: Any) -> Any:
        return {"got": event["x"], "name": context.function_name}

    # When it is invoked
    outcome = invoke(handler, {"x": 1}, _context(), wait=1)

    # Then the invocation finished with that result and no error
    assert outcome.finished
    assert outcome.result == {"got": 1, "name": "EchoFunction"}
    assert outcome.error is None


def test_invoke_reports_what_the_handler_raised() -> None:
    # Given a handler that raises
    failure = RuntimeError("boom")

    def handler(event: dict[str, Any], context: Any) -> Any:
        raise failure

    # When it is invoked
    outcome = invoke(handler, {}, _context(), wait=1)

    # Then the error is reported, not raised in the caller
    assert outcome.finished
    assert outcome.error is failure


def test_invoke_abandons_a_handler_still_running_after_the_wait() -> None:
    # Given a handler slower than the time the caller waits for it
    def handler(event: dict[str, Any], context: Any) -> Any:
        time.sleep(0.5)
        return "late"

    # When it is invoked with a short wait
    started = time.monotonic()
    outcome = invoke(handler, {}, _context(), wait=0.05)

    # Then the caller gets "not finished" after the wait, without the result
    assert not outcome.finished
    assert outcome.result is None
    assert time.monotonic() - started < 0.4


def test_the_package_re_exports_its_public_names() -> None:
    # Given the names callers import from local.apigw (run.py, workers.py, bench, integration)
    # Then every one of them resolves on the package
    for name in local.apigw.__all__:
        assert getattr(local.apigw, name) is not None
    assert local.apigw.LambdaContext is LambdaContext
    assert local.apigw.load_handler is load_handler
    assert local.apigw.build_proxy_event is build_proxy_event
