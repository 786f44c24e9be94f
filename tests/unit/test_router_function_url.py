"""payments.http.router on Lambda function URL events (payload 2.0, the postLink function's URL),
beside the REST proxy events (payload 1.0) it took before: the same Request, the same answers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from payments.http.router import Reply, Request, Router, json_response

EVENTS = Path(__file__).resolve().parents[2] / "events"


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def _url_event(**changes: Any) -> dict[str, Any]:
    """A function URL event as Lambda sends it (AuthType NONE)."""
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/epay/postlink",
        "rawQueryString": "a=1",
        "headers": {
            "content-type": "application/json",
            "x-forwarded-for": "91.195.226.33",
            "user-agent": "Apache-HttpClient/4.5.13 (Java/11.0.19)",
        },
        "queryStringParameters": {"a": "1"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "urlid",
            "domainName": "urlid.lambda-url.eu-central-1.on.aws",
            "domainPrefix": "urlid",
            "http": {
                "method": "POST",
                "path": "/epay/postlink",
                "protocol": "HTTP/1.1",
                "sourceIp": "91.195.226.33",
                "userAgent": "Apache-HttpClient/4.5.13 (Java/11.0.19)",
            },
            "requestId": "r-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "28/Nov/2026:12:00:01 +0000",
            "timeEpoch": 1795867201000,
        },
        "body": '{"invoiceId": "000000042"}',
        "isBase64Encoded": False,
    }
    event.update(changes)
    return event


def _echo_router() -> tuple[Router, list[Request]]:
    router, seen = Router(), []

    @router.route("POST", "/epay/postlink")
    def postlink(request: Request, _context: Any) -> Reply:
        seen.append(request)
        return json_response(200, {"received": True})

    return router, seen


def test_a_function_url_event_becomes_the_request() -> None:
    # Given a function URL event
    # When it is read
    request = Request.from_event(_url_event())

    # Then method, path, query, headers, body and source IP are the REST event's equivalents
    assert request.method == "POST"
    assert request.resource == "/epay/postlink"
    assert request.path_params == {}
    assert request.query == {"a": "1"}
    assert request.body == '{"invoiceId": "000000042"}'
    assert request.is_base64_encoded is False
    assert request.body_bytes() == b'{"invoiceId": "000000042"}'
    assert request.source_ip == "91.195.226.33"
    # And a public URL has no signed caller
    assert request.caller is None


def test_headers_of_a_function_url_event_are_case_insensitive() -> None:
    # Given headers in any case (Lambda sends them lower case; tests may not)
    request = Request.from_event(_url_event(headers={"Content-Type": "application/json"}))
    # Then they are found by any spelling
    assert request.header("content-type") == "application/json"
    assert request.header("CONTENT-TYPE") == "application/json"
    assert request.header("Content-Type") == "application/json"
    assert request.header("x-missing") is None


def test_a_base64_body_of_a_function_url_event_is_decoded() -> None:
    # Given a body Lambda base64-encoded (e.g. a form post)
    raw = b"invoiceId=000000042&amount=1500.5"
    event = _url_event(body=base64.b64encode(raw).decode(), isBase64Encoded=True)
    # Then the request gives back the bytes ePay sent
    request = Request.from_event(event)
    assert request.is_base64_encoded is True
    assert request.body_bytes() == raw


def test_a_function_url_event_without_body_or_query() -> None:
    # Given a GET without body and query (Lambda leaves both keys out)
    event = _url_event()
    del event["body"], event["queryStringParameters"]
    event["requestContext"]["http"]["method"] = "GET"
    # Then the request has neither
    request = Request.from_event(event)
    assert (request.method, request.body, request.query) == ("GET", None, {})


def test_the_router_answers_a_function_url_event_like_a_rest_one() -> None:
    # Given a route on a literal path, and the same request in both event shapes
    router, seen = _echo_router()
    rest = {
        "resource": "/epay/postlink",
        "path": "/epay/postlink",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "requestContext": {"identity": {"sourceIp": "91.195.226.33"}},
        "body": '{"invoiceId": "000000042"}',
        "isBase64Encoded": False,
    }
    # When each is resolved
    from_url = router.resolve(_url_event(), _Context())
    from_rest = router.resolve(rest, _Context())
    # Then the answers are the same proxy response (a function URL reads that shape too)
    assert from_url == from_rest
    assert from_url["statusCode"] == 200
    assert json.loads(from_url["body"]) == {"received": True}
    # And the route saw equal requests (headers, body, source IP)
    assert seen[0].header("content-type") == seen[1].header("content-type")
    assert (seen[0].body, seen[0].source_ip) == (seen[1].body, seen[1].source_ip)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/"), ("POST", "/epay/postlink/other"), ("GET", "/epay/postlink"), ("POST", "/x")],
)
def test_an_unknown_path_of_a_function_url_is_the_same_404(method: str, path: str) -> None:
    # Given a function URL (it takes every path and method) and a REST event for no route
    router, seen = _echo_router()
    event = _url_event(rawPath=path)
    event["requestContext"]["http"].update(method=method, path=path)
    rest = {"resource": "/nowhere", "httpMethod": method, "headers": {}, "body": None}

    # When an unknown path or method arrives
    answer = router.resolve(event, _Context())

    # Then it is the router's 404 in the service's error shape, the route never ran
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"]["code"] == "not_found"
    assert answer["headers"] == router.resolve(rest, _Context())["headers"]
    assert seen == []


def test_the_canonical_postlink_events_are_function_url_events() -> None:
    # Given events/postlink (what tests and `sam local invoke` use)
    for path in sorted((EVENTS / "postlink").glob("*.json")):
        event = json.loads(path.read_text())
        # Then each is a function URL event the router reads
        assert event["version"] == "2.0", path.name
        request = Request.from_event(event)
        assert request.method == "POST", path.name
        assert request.resource.startswith("/epay/postlink"), path.name
        assert request.source_ip == "91.195.226.33", path.name
        assert request.header("Content-Type"), path.name
