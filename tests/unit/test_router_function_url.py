"""payments.http.router on payload 2.0 events: Lambda function URL events (the postLink function's
URL) and HTTP API events (the merchant API), beside the REST proxy events (payload 1.0) of the
public pages: the same Request, the same answers."""

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


# ---------------------------------------------------------- HTTP API events (the merchant API)


def test_an_http_api_event_names_its_route_params_and_signer() -> None:
    # Given a signed merchant call as the HTTP API hands it over (events/charges, payload 2.0)
    event = json.loads((EVENTS / "charges" / "capture-charge.json").read_text())
    assert event["version"] == "2.0"
    # When it is read
    request = Request.from_event(event)
    # Then the route comes from routeKey (not the raw path), with its path ids and its signer
    assert (request.method, request.resource) == ("POST", "/charges/{chargeId}/capture")
    assert request.path_params == {"chargeId": "ch_0123456789abcdef0123456789abcdef"}
    assert request.caller == "arn:aws:iam::123456789012:user/merchant-backend"
    assert request.source_ip == "203.0.113.10"
    assert request.header("Content-Type") == "application/json"


def test_an_http_api_event_without_a_signer_has_no_caller() -> None:
    # Given an HTTP API event whose IAM authorizer context is missing
    event = json.loads((EVENTS / "operator" / "resolve-charge.json").read_text())
    del event["requestContext"]["authorizer"]
    # When it is read / Then no caller is made up (operator actions refuse it)
    assert Request.from_event(event).caller is None


def test_the_router_answers_an_http_api_event_by_its_route() -> None:
    # Given a router with a route on a path template
    router = Router()
    seen: list[Request] = []

    @router.route("POST", "/charges/{chargeId}/capture")
    def capture(request: Request, _context: Any) -> Reply:
        seen.append(request)
        return json_response(200, {"id": request.path_params["chargeId"]})

    event = json.loads((EVENTS / "charges" / "capture-charge.json").read_text())
    # When an HTTP API event for it arrives
    answer = router.resolve(event, _Context())
    # Then the route ran with the event's path id and answered in the proxy shape
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"id": "ch_0123456789abcdef0123456789abcdef"}
    assert [r.resource for r in seen] == ["/charges/{chargeId}/capture"]


def test_the_canonical_merchant_events_are_http_api_events() -> None:
    # Given events/ of the merchant and operator routes (what tests and `sam local invoke` use)
    for folder in ("charges", "cards", "subscriptions", "operator"):
        for path in sorted((EVENTS / folder).glob("*.json")):
            event = json.loads(path.read_text())
            # Then each is a signed HTTP API event on the $default stage
            assert event["version"] == "2.0", path.name
            assert " /" in event["routeKey"], path.name
            assert event["requestContext"]["stage"] == "$default", path.name
            assert event["requestContext"]["authorizer"]["iam"]["userArn"], path.name
            request = Request.from_event(event)
            assert f"{request.method} {request.resource}" == event["routeKey"], path.name
