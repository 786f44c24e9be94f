"""local.apigw.LocalApiGateway over real HTTP (urllib3) with the fixture template's echo handler."""

from __future__ import annotations

import base64
import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import urllib3
from conftest import FIXTURE_ENV, FIXTURE_TEMPLATE

from local.apigw.event import LOCAL_IAM_USER_ARN
from local.apigw.integration import MAX_REQUEST_BYTES
from local.apigw.server import LocalApiGateway


def _echo(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    assert response.status == 200, response.data
    payload: dict[str, Any] = json.loads(response.data)
    return payload


def test_handler_gets_a_proxy_event_and_its_answer_is_passed_through(
    gateway: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given the echo route POST /echo/{thing} (IAM-authorised in the template)
    # When a JSON body is posted with a query string and repeated headers
    response = http.request(
        "POST",
        f"{gateway.url}/echo/hello%20world?x=1&x=2&y=z",
        body=b'{"amount": "1500.00"}',
        headers=urllib3.HTTPHeaderDict(
            [("Content-Type", "application/json"), ("X-Multi", "a"), ("X-Multi", "b")]
        ),
    )

    # Then the handler's status, headers (both maps merged) and body come back
    assert response.status == 200
    assert response.headers["X-Echo"] == "yes"
    assert response.headers["X-Both"] == "multi"
    assert response.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers["x-amzn-RequestId"]
    payload = _echo(response)
    event = payload["event"]

    # And the handler saw a REST API proxy event for that route
    assert event["resource"] == "/echo/{thing}"
    assert event["path"] == "/echo/hello%20world"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"thing": "hello world"}
    assert event["queryStringParameters"] == {"x": "2", "y": "z"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": ["z"]}
    assert event["multiValueHeaders"]["X-Multi"] == ["a", "b"]
    assert event["headers"]["Host"] == gateway.url.removeprefix("http://")
    assert event["body"] == '{"amount": "1500.00"}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "v1"  # the template's StageName
    assert context["resourcePath"] == "/echo/{thing}"
    assert context["requestId"] == response.headers["x-amzn-RequestId"]
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    # And, the route being AWS_IAM, the fake local caller (no signature is checked)
    assert context["identity"]["userArn"] == LOCAL_IAM_USER_ARN

    # And the Lambda context and the environment are the function's
    assert payload["context"]["function_name"] == "EchoFunction"
    assert payload["context"]["memory_limit_in_mb"] == 256
    assert 0 < payload["context"]["remaining_ms"] <= 2000
    assert payload["env"] == FIXTURE_ENV
    assert payload["layer"] == "from-the-layer"


def test_public_routes_have_no_iam_identity(
    gateway: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given ANY /public/{proxy+} with Auth: NONE
    # When a form is posted to a deep path
    response = http.request(
        "PUT",
        f"{gateway.url}/public/a/b",
        body=b"PaRes=x%2By&MD=42",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    # Then the event carries the form as text and no caller identity
    event = _echo(response)["event"]
    assert event["pathParameters"] == {"proxy": "a/b"}
    assert event["body"] == "PaRes=x%2By&MD=42"
    assert event["requestContext"]["identity"]["userArn"] is None


def test_binary_request_bodies_reach_the_handler_base64(
    gateway: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given a binary body
    blob = bytes(range(256))
    # When it is posted
    response = http.request(
        "POST",
        f"{gateway.url}/public/upload",
        body=blob,
        headers={"Content-Type": "application/octet-stream"},
    )
    # Then the handler got it base64-encoded and flagged
    event = _echo(response)["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == blob


def test_base64_responses_are_decoded(gateway: LocalApiGateway, http: urllib3.PoolManager) -> None:
    # Given a handler answering a PNG, base64-encoded in the proxy response
    response = http.request("GET", f"{gateway.url}/behave/binary")
    # Then the caller receives the raw bytes with the handler's content type
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.data.startswith(b"\x89PNG\r\n\x1a\n")


def test_status_and_empty_bodies_pass_through(
    gateway: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    response = http.request("GET", f"{gateway.url}/behave/status?code=409")
    assert response.status == 409
    assert json.loads(response.data) == {"code": "409"}
    response = http.request("DELETE", f"{gateway.url}/behave/empty")
    assert response.status == 204
    assert response.data == b""


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nowhere"),
        ("GET", "/"),
        ("GET", "/echo/x"),  # the resource exists, the method does not
        ("OPTIONS", "/echo/x"),  # no CORS configured
    ],
)
def test_unknown_routes_answer_like_api_gateway(
    gateway: LocalApiGateway, http: urllib3.PoolManager, method: str, path: str
) -> None:
    # When a path or method the template does not define is requested
    response = http.request(method, f"{gateway.url}{path}")
    # Then API Gateway's answer comes back: 403 Missing Authentication Token
    assert response.status == 403
    assert json.loads(response.data) == {"message": "Missing Authentication Token"}
    assert response.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


@pytest.mark.parametrize("mode", ["boom", "malformed"])
def test_handler_failures_are_502(
    gateway: LocalApiGateway, http: urllib3.PoolManager, mode: str
) -> None:
    # When the handler raises or answers something that is not a proxy response
    response = http.request("GET", f"{gateway.url}/behave/{mode}")
    # Then, like API Gateway, the caller gets 502 Internal server error
    assert response.status == 502
    assert json.loads(response.data) == {"message": "Internal server error"}


def test_integration_timeout_is_504(gateway: LocalApiGateway, http: urllib3.PoolManager) -> None:
    # Given an integration timeout of 1.5 s (29 s in API Gateway) under the function's 2 s
    started = time.monotonic()
    # When the handler sleeps past it
    response = http.request("GET", f"{gateway.url}/behave/sleep?seconds=1.8")
    # Then the caller gets 504 when the integration timeout expires, not when the handler ends
    assert response.status == 504
    assert json.loads(response.data) == {"message": "Endpoint request timed out"}
    assert time.monotonic() - started < 1.8


def test_function_timeout_is_502(http: urllib3.PoolManager) -> None:
    # Given an integration timeout longer than the function's 2 s Timeout
    api = LocalApiGateway(FIXTURE_TEMPLATE, FIXTURE_ENV, port=0, integration_timeout=29)
    with api:
        # When the handler runs past its Timeout
        response = http.request("GET", f"{api.url}/behave/sleep?seconds=2.5")
    # Then Lambda's timeout is a function error: 502
    assert response.status == 502


def test_bodies_over_10_mb_are_refused(gateway: LocalApiGateway, http: urllib3.PoolManager) -> None:
    # When a body over API Gateway's 10 MB limit is sent
    response = http.request(
        "POST",
        f"{gateway.url}/public/big",
        body=b"x" * (MAX_REQUEST_BYTES + 1),
        headers={"Content-Type": "text/plain"},
    )
    # Then it is refused before any handler runs
    assert response.status == 413


def test_concurrent_requests_are_served_in_parallel(
    gateway: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given two slow requests at once
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = list(
            pool.map(
                lambda _: http.request("GET", f"{gateway.url}/behave/sleep?seconds=0.5").status,
                range(2),
            )
        )
    # Then both finish in about the time of one
    assert statuses == [200, 200]
    assert time.monotonic() - started < 0.95


def test_start_applies_and_stop_restores_the_environment() -> None:
    # Given a variable the process already has
    os.environ["GREETING"] = "before"
    try:
        api = LocalApiGateway(FIXTURE_TEMPLATE, lambda url: {"GREETING": url}, port=0)
        # When the gateway runs, then its environment is in place (callable env gets the URL)
        with api:
            assert os.environ["GREETING"] == api.url
        # And after stop() the old value is back
        assert os.environ["GREETING"] == "before"
    finally:
        del os.environ["GREETING"]


def test_chunked_request_bodies_are_assembled(
    gateway: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given a body sent with Transfer-Encoding: chunked
    chunks = [b'{"part": ', b'"one", ', b'"more": 2}']
    # When it is posted
    response = http.request(
        "POST",
        f"{gateway.url}/public/chunked",
        body=iter(chunks),
        chunked=True,
        headers={"Content-Type": "application/json"},
    )
    # Then the handler gets the whole body
    assert _echo(response)["event"]["body"] == b"".join(chunks).decode()


BURST = 300


def test_a_burst_of_concurrent_connections_is_all_answered(gateway: LocalApiGateway) -> None:
    # Given 300 clients that each open their own connection and wait to start together
    start_together = threading.Barrier(BURST)

    def one_request(_: int) -> int | str:
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
        try:
            start_together.wait()
            connection.request("GET", "/behave/status?code=200")
            return connection.getresponse().status
        except OSError as error:  # ConnectionResetError, TimeoutError...
            return repr(error)
        finally:
            connection.close()

    # When they all connect and send a request at once
    with ThreadPoolExecutor(max_workers=BURST) as pool:
        answers = list(pool.map(one_request, range(BURST)))

    # Then every connection is accepted and answered (the listen backlog takes the burst)
    failures = [answer for answer in answers if answer != 200]
    assert failures == [], f"{len(failures)} of {BURST} failed, e.g. {failures[:3]}"


def test_keep_alive_requests_are_not_held_back_by_nagle(gateway: LocalApiGateway) -> None:
    # Given one keep-alive connection
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        # When 20 requests are sent one after the other on it
        started = time.monotonic()
        for _ in range(20):
            connection.request("POST", "/behave/status?code=200", body=b"{}")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
        elapsed = time.monotonic() - started
    finally:
        connection.close()
    # Then none waits for a delayed ACK (~40 ms each with Nagle on; about 1 ms without)
    assert elapsed < 0.5


def test_an_http_api_route_gets_a_payload_2_event(
    gateway: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given the echo function's HTTP API route POST /v2/echo/{thing} (IAM by the API's default)
    # When a JSON body is posted with a query string and a repeated header
    response = http.request(
        "POST",
        f"{gateway.url}/v2/echo/hello%20world?x=1&x=2",
        body=b'{"amount": "1500.00"}',
        headers=urllib3.HTTPHeaderDict(
            [("Content-Type", "application/json"), ("X-Multi", "a"), ("X-Multi", "b")]
        ),
    )

    # Then the handler saw an HTTP API event (payload 2.0) for that route, as API Gateway sends it
    event = _echo(response)["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v2/echo/{thing}"
    assert event["rawPath"] == "/v2/echo/hello%20world"
    assert event["pathParameters"] == {"thing": "hello world"}
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["headers"]["x-multi"] == "a,b"
    assert event["body"] == '{"amount": "1500.00"}'
    context = event["requestContext"]
    assert (context["stage"], context["routeKey"]) == ("$default", "POST /v2/echo/{thing}")
    assert context["http"]["method"] == "POST"
    assert context["requestId"] == response.headers["x-amzn-RequestId"]
    # And, the API's default being AWS_IAM, the fake local signer in the authorizer context
    assert context["authorizer"]["iam"]["userArn"] == LOCAL_IAM_USER_ARN
    assert "identity" not in context
