"""Lambda function URLs in the local stack: the template reader's routes and names, the event
(payload 2.0) and the local API serving a function URL's paths on its own port."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import urllib3
from conftest import FIXTURE_ENV, FIXTURE_TEMPLATE, FIXTURES

from local.apigw import build_function_url_event
from local.apigw.server import LocalApiGateway
from local.template import (
    TemplateError,
    function_environment,
    function_url_names,
    function_url_routes,
    load_template,
    parameter_defaults,
    resolve,
)

REPO_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"

URL_FUNCTION = """
  UrlFunction:
    Type: AWS::Serverless::Function
    Metadata:
      FunctionUrlPaths:
        - /hooks/in
        - /hooks/in/failure
    Properties:
      CodeUri: {code}
      Handler: app.lambda_handler
      Timeout: 5
      FunctionUrlConfig:
        AuthType: NONE
"""
USER_FUNCTION = """
  UserFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {code}
      Handler: app.lambda_handler
      Environment:
        Variables:
          HOOK_BASE_URL: !GetAtt UrlFunctionUrl.FunctionUrl
"""


def _template_with_a_url(tmp_path: Path) -> Path:
    # The fixture template, plus a function with a function URL and one that reads its URL
    text = FIXTURE_TEMPLATE.read_text()
    text = text.replace("ContentUri: layers/", f"ContentUri: {FIXTURES}/layers/")
    text = text.replace("CodeUri: functions/", f"CodeUri: {FIXTURES}/functions/")
    code = f"{FIXTURES}/functions/echo/"
    text = text.replace(
        "\nOutputs:",
        URL_FUNCTION.format(code=code) + USER_FUNCTION.format(code=code) + "\nOutputs:",
    )
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def url_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _template_with_a_url(tmp_path_factory.mktemp("url"))


@pytest.fixture(scope="module")
def url_gateway(url_template: Path) -> Iterator[LocalApiGateway]:
    api = LocalApiGateway(url_template, FIXTURE_ENV, port=0, integration_timeout=1.5)
    api.start()
    try:
        yield api
    finally:
        api.stop()


# ------------------------------------------------------------------------------ the template


def test_function_url_paths_become_routes(url_template: Path) -> None:
    # Given a function with FunctionUrlConfig and Metadata.FunctionUrlPaths
    routes = function_url_routes(load_template(url_template))
    # Then each path is a function URL route of any method, with the URL's auth
    assert [(r.resource, r.method, r.function_id) for r in routes] == [
        ("/hooks/in", "ANY", "UrlFunction"),
        ("/hooks/in/failure", "ANY", "UrlFunction"),
    ]
    assert {(r.function_url, r.auth, r.timeout) for r in routes} == {(True, "NONE", 5)}
    # And the fixture template without one has none
    assert function_url_routes(load_template(FIXTURE_TEMPLATE)) == []


def test_a_function_url_without_local_paths_fails_loudly(url_template: Path) -> None:
    template = load_template(url_template)
    del template["Resources"]["UrlFunction"]["Metadata"]
    with pytest.raises(TemplateError, match="FunctionUrlPaths"):
        function_url_routes(template)


def test_a_function_url_resolves_when_named_and_is_left_out_when_not(url_template: Path) -> None:
    template = load_template(url_template)
    params = parameter_defaults(template)
    names = {"EchoTable": "t", "EchoSecret": "s"}
    # Given the local stack's names for the function URLs (the local API + "/")
    urls = function_url_names(template, "http://127.0.0.1:3000")
    assert urls == {"UrlFunctionUrl.FunctionUrl": "http://127.0.0.1:3000/"}
    # Then a variable holding the URL resolves to it
    env = function_environment(template, "UserFunction", params, {**names, **urls})
    assert env["HOOK_BASE_URL"] == "http://127.0.0.1:3000/"
    # And without them the variable is left out (the layer falls back to PUBLIC_BASE_URL)
    assert "HOOK_BASE_URL" not in function_environment(template, "UserFunction", params, names)
    # And any other GetAtt still cannot be resolved
    with pytest.raises(TemplateError):
        resolve({"Fn::GetAtt": ["EchoTable", "Arn"]}, params, names)


def test_the_repository_template_serves_the_postlink_as_a_function_url() -> None:
    template = load_template(REPO_TEMPLATE)
    routes = function_url_routes(template)
    assert {(r.function_id, r.resource) for r in routes} == {
        ("PostLinkFunction", "/epay/postlink"),
        ("PostLinkFunction", "/epay/postlink/failure"),
    }
    # And the charge path gets the local URL as its postLink base
    params = {**parameter_defaults(template), "PublicBaseUrl": "http://127.0.0.1:3000"}
    names = {"PaymentsTable": "t", "EpayCredentialsSecret": "s", "PaymentsBus": "b"}
    urls = function_url_names(template, "http://127.0.0.1:3000")
    env = function_environment(template, "ChargesFunction", params, {**names, **urls})
    assert env["POSTLINK_BASE_URL"] == "http://127.0.0.1:3000/"


# --------------------------------------------------------------------------------- the event


def test_a_function_url_event_has_lambdas_shape() -> None:
    # Given a POST with repeated headers, a cookie and a query
    event = build_function_url_event(
        "post",
        "/epay/postlink",
        [
            ("Content-Type", "application/json"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("Cookie", "a=1; b=2"),
        ],
        "x=1&x=2&y=z",
        b'{"invoiceId": "1"}',
        "203.0.113.9",
        url_id="abc",
        request_id="r-1",
        now=datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC),
    )
    # Then it is payload 2.0, as Lambda sends a function URL's requests
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/epay/postlink"
    assert event["rawQueryString"] == "x=1&x=2&y=z"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "z"}
    # And headers are lower case, repeats joined, the cookies apart
    headers = event["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["x-multi"] == "a,b"
    assert "cookie" not in headers
    assert event["cookies"] == ["a=1", "b=2"]
    assert headers["host"] == "abc.lambda-url.us-east-1.on.aws"
    assert headers["x-forwarded-for"] == "203.0.113.9"
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/epay/postlink",
        "protocol": "HTTP/1.1",
        "sourceIp": "203.0.113.9",
        "userAgent": "",
    }
    assert (context["accountId"], context["stage"], context["requestId"]) == (
        "anonymous",
        "$default",
        "r-1",
    )
    assert context["timeEpoch"] == 1795867201000
    assert (event["body"], event["isBase64Encoded"]) == ('{"invoiceId": "1"}', False)
    assert "pathParameters" not in event
    assert "resource" not in event


def test_a_binary_body_is_base64_and_no_body_is_absent() -> None:
    binary = build_function_url_event(
        "POST", "/h", {"Content-Type": "application/octet-stream"}, None, b"\xff\x00"
    )
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00"
    empty = build_function_url_event("GET", "/h", None, None, None)
    assert "body" not in empty
    assert "queryStringParameters" not in empty
    assert empty["rawQueryString"] == ""


# -------------------------------------------------------------------------------- the server


def test_the_local_api_serves_a_function_url_path_with_a_function_url_event(
    url_gateway: LocalApiGateway,
) -> None:
    http = urllib3.PoolManager(retries=False)
    # When ePay-like POSTs reach the function URL's paths on the local API's port
    response = http.request(
        "POST",
        f"{url_gateway.url}/hooks/in/failure?a=1",
        body=b'{"code": "error"}',
        headers={"Content-Type": "application/json"},
    )
    # Then the function got a function URL event (no REST resource, no API Gateway identity)
    assert response.status == 200, response.data
    event: dict[str, Any] = json.loads(response.data)["event"]
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/hooks/in/failure"
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert event["headers"]["content-type"] == "application/json"
    assert event["body"] == '{"code": "error"}'
    assert event["queryStringParameters"] == {"a": "1"}
    assert "resource" not in event
    # And the REST routes are unchanged beside it
    rest = http.request("POST", f"{url_gateway.url}/echo/x", body=b"{}")
    assert json.loads(rest.data)["event"]["resource"] == "/echo/{thing}"
    # And a path neither serves is API Gateway's 403 as before
    missing = http.request("POST", f"{url_gateway.url}/hooks/other")
    assert missing.status == 403
