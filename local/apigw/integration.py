"""API Gateway's Lambda proxy integration: which route serves a request, what answer comes back.

Given a route and its event, :func:`integrate` invokes the handler and turns its outcome into the
HTTP answer API Gateway would send, including API Gateway's own error answers (403, 413, 502,
504) with their bodies byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from local.apigw.runtime import (
    MAX_LAMBDA_PAYLOAD_BYTES,
    Invocation,
    LambdaContext,
    invoke,
    load_handler,
)
from local.template import Route

if TYPE_CHECKING:
    from local.apigw.pool import HandlerPool

__all__ = [
    "INTEGRATION_TIMEOUT_SECONDS",
    "MAX_REQUEST_BYTES",
    "ProxyResponse",
    "bad_gateway",
    "integrate",
    "match_route",
    "missing_token",
    "parse_proxy_response",
    "too_long",
]

logger = logging.getLogger("local.apigw")

MAX_REQUEST_BYTES: Final = 10 * 1024 * 1024  # API Gateway REST payload limit
INTEGRATION_TIMEOUT_SECONDS: Final = 29.0  # API Gateway REST integration timeout (default)

_RESPONSE_KEYS = frozenset(
    {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
)

# API Gateway's own error bodies, byte for byte (its spacing differs between them).
_MISSING_TOKEN = b'{"message":"Missing Authentication Token"}'
_INTERNAL_ERROR = b'{"message": "Internal server error"}'
_TIMED_OUT = b'{"message": "Endpoint request timed out"}'
_TOO_LONG = b'{"message":"Request Too Long"}'


# ---------------------------------------------------------------------------------- routing


def match_route(
    routes: Sequence[Route], method: str, raw_path: str
) -> tuple[Route, dict[str, str]] | None:
    """The route API Gateway would pick for ``method`` and ``raw_path``, with its path parameters.

    The most specific resource that fits the path wins; then the exact method, then ``ANY``. A path
    that fits but whose best resource lacks the method does not fall back to a less specific one.
    """
    parts = [unquote(part) for part in raw_path.split("/") if part]
    matches = [
        (route, params) for route in routes if (params := route.match_parts(parts)) is not None
    ]
    if not matches:
        return None
    # api_routes() orders routes most specific first, so the first match names the resource.
    best = matches[0][0].resource
    candidates = [(route, params) for route, params in matches if route.resource == best]
    method = method.upper()
    for wanted in (method, "ANY"):
        for route, params in candidates:
            if route.method == wanted:
                return route, params
    return None


# -------------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class ProxyResponse:
    """An HTTP answer: status, header pairs (repeats allowed) and body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_error(status: int, body: bytes, error_type: str | None = None) -> ProxyResponse:
    headers = [("Content-Type", "application/json")]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return ProxyResponse(status, headers, body)


def missing_token() -> ProxyResponse:
    """403 for a path or method the API does not define."""
    return _json_error(403, _MISSING_TOKEN, "MissingAuthenticationTokenException")


def too_long() -> ProxyResponse:
    """413 for a request body or event over the size limits."""
    return _json_error(413, _TOO_LONG)


def bad_gateway() -> ProxyResponse:
    """502 for a function error, timeout or malformed proxy response."""
    return _json_error(502, _INTERNAL_ERROR)


def _timed_out() -> ProxyResponse:
    return _json_error(504, _TIMED_OUT)


def parse_proxy_response(result: Any) -> ProxyResponse:
    """Turn a handler's return value into the HTTP answer API Gateway would send.

    A malformed proxy response (not a dict, unknown keys, bad status, bad base64) is a 502 like API
    Gateway's "Malformed Lambda proxy response".
    """
    if not isinstance(result, dict) or not set(result) <= _RESPONSE_KEYS:
        logger.error("Malformed Lambda proxy response: %s", _shape(result))
        return bad_gateway()
    status = result.get("statusCode", 200)
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        logger.error("Malformed Lambda proxy response: statusCode %r", status)
        return bad_gateway()
    headers = _response_headers(result)
    if headers is None:
        return bad_gateway()
    payload = _response_body(result)
    if payload is None:
        return bad_gateway()
    return ProxyResponse(status, headers, payload)


def _response_headers(result: dict[str, Any]) -> list[tuple[str, str]] | None:
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        logger.error("Malformed Lambda proxy response: headers are not objects")
        return None
    # Both maps are merged; a name present in multiValueHeaders takes its values from there.
    multi_names = {name.lower() for name in multi}
    headers = [
        (str(k), _header_value(v)) for k, v in single.items() if k.lower() not in multi_names
    ]
    for name, values in multi.items():
        if not isinstance(values, list):
            logger.error("Malformed Lambda proxy response: multiValueHeaders[%r] not a list", name)
            return None
        headers.extend((str(name), _header_value(value)) for value in values)
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return headers


def _response_body(result: dict[str, Any]) -> bytes | None:
    body = result.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        logger.error("Malformed Lambda proxy response: body is %s, not a string", type(body))
        return None
    if result.get("isBase64Encoded") is not True:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        logger.error("Malformed Lambda proxy response: body is not valid base64")
        return None


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return f"object with keys {sorted(map(str, value))}"
    return type(value).__name__


# ------------------------------------------------------------------------------ integration


def integrate(
    route: Route,
    event: dict[str, Any],
    request_id: str,
    *,
    base_dir: Path,
    integration_timeout: float,
    pool: HandlerPool | None = None,
) -> ProxyResponse:
    """Invoke ``route``'s handler with ``event`` and answer like API Gateway's proxy integration.

    Event over Lambda's 6 MB: 413. Handler not loadable, raising, past the function's Timeout, or
    answering something too big or malformed: 502. Still running at the integration timeout: 504.
    With a ``pool`` (local.apigw.pool), the handler runs in one of its worker processes.
    """
    if len(json.dumps(event)) > MAX_LAMBDA_PAYLOAD_BYTES:
        return too_long()
    context = LambdaContext(
        function_name=route.function_id,
        memory_limit_in_mb=route.memory,
        timeout_seconds=route.timeout,
        aws_request_id=str(uuid.uuid4()),
    )
    wait = min(float(route.timeout), integration_timeout)
    if pool is not None:
        outcome = pool.invoke(route.code_uri, route.handler, event, context, wait)
    else:
        try:
            handler = load_handler(route.code_uri, route.handler, base_dir)
        except Exception:
            logger.exception("Cannot load %s (%s)", route.function_id, route.handler)
            return bad_gateway()
        outcome = invoke(handler, event, context, wait)
    if not outcome.finished:
        return _timeout_answer(route, integration_timeout, request_id)
    return _outcome_answer(route, outcome, request_id)


def _timeout_answer(route: Route, integration_timeout: float, request_id: str) -> ProxyResponse:
    if route.timeout < integration_timeout:
        logger.error(
            "%s Task timed out after %.2f seconds (request %s)",
            route.function_id,
            route.timeout,
            request_id,
        )
        return bad_gateway()
    logger.error("Execution failed due to a timeout error (request %s)", request_id)
    return _timed_out()


def _outcome_answer(route: Route, outcome: Invocation, request_id: str) -> ProxyResponse:
    if outcome.error is not None:
        remote = getattr(outcome.error, "remote_traceback", None)
        logger.error(
            "%s raised %s (request %s)%s",
            route.function_id,
            getattr(outcome.error, "type_name", type(outcome.error).__name__),
            request_id,
            f"\n{remote.rstrip()}" if remote else "",
            exc_info=None if remote is not None else outcome.error,
        )
        return bad_gateway()
    try:
        size = len(json.dumps(outcome.result))
    except (TypeError, ValueError):
        logger.error("Lambda response is not JSON-serialisable (request %s)", request_id)
        return bad_gateway()
    if size > MAX_LAMBDA_PAYLOAD_BYTES:
        logger.error("Lambda response of %d bytes exceeds 6 MB (request %s)", size, request_id)
        return bad_gateway()
    return parse_proxy_response(outcome.result)
