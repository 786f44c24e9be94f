"""Check what a handler answered (and, when it accepted it, what it was asked) against openapi.yaml.

The integration tier calls the handlers in-process with API Gateway REST proxy events (and the
postLink function with Lambda function URL events, payload 2.0); every answer it sees goes
through :func:`check_exchange` (tests/integration/conftest.py), which builds openapi-core
request and response adapters from the event and the proxy response and validates them against
the API document, loaded once per session:

* the response: its status must be documented for the operation, its content type must be one of
  that status's media types, its body must match the schema (JSON and HTML alike) and its
  documented required headers must be there with valid values;
* the request, when the service accepted it (2xx or 3xx): its parameters and body must be ones
  the document accepts too (security is not checked: the tier sends no SigV4 signatures).

An event for a route the document does not describe (not an HTTP event, or a resource the
template does not route) is not checked here; tests/contract proves the document and the
template name the same routes.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.request.exceptions import MissingRequestBody
from openapi_core.validation.request.validators import (
    V31RequestBodyValidator,
    V31RequestParametersValidator,
)
from werkzeug.datastructures import Headers, ImmutableMultiDict

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "openapi.yaml"
# The document's local server: openapi-core matches the request's host against `servers`.
HOST_URL = "http://127.0.0.1:3000"
BODY_SHOWN = 600  # characters of a body quoted in a failure


# What the checks found outside the main thread during the current test: a handler called in a
# server thread (e.g. the postLink receiver) cannot fail the test by raising, so conftest's
# autouse fixture fails the test from this list. One list per process (imported once).
VIOLATIONS: list[str] = []
# (METHOD, path template, status) of every exchange checked this session (the tier's coverage of
# the document, printed in pytest's summary by conftest).
SEEN: set[tuple[str, str, int]] = set()


class ContractViolation(AssertionError):
    """A request or response the API document does not allow."""


@functools.cache
def spec_document() -> dict[str, Any]:
    """openapi.yaml, parsed once per session."""
    document: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return document


@functools.cache
def openapi() -> OpenAPI:
    """The validating OpenAPI object, built once per session (building it checks the spec)."""
    return OpenAPI.from_dict(spec_document())


@functools.cache
def _request_validators() -> tuple[V31RequestParametersValidator, V31RequestBodyValidator]:
    spec = openapi().spec
    return V31RequestParametersValidator(spec), V31RequestBodyValidator(spec)


@functools.cache
def documented_operations() -> frozenset[tuple[str, str]]:
    """(METHOD, path template) of every operation in the document."""
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return frozenset(
        (method.upper(), path)
        for path, item in spec_document()["paths"].items()
        for method in item
        if method in methods
    )


def _multi(
    single: Mapping[str, Any] | None, multi: Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    """Name/value pairs of a proxy event's (or response's) single- and multi-value maps."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, values in (multi or {}).items():
        for value in values or []:
            pairs.append((str(name), _one_line(value)))
        seen.add(str(name).lower())
    for name, value in (single or {}).items():
        if str(name).lower() not in seen and value is not None:
            pairs.append((str(name), _one_line(value)))
    return pairs


def _one_line(value: Any) -> str:
    # A header value as werkzeug's Headers takes it: the hardening tests send CR/LF in header
    # values (API Gateway passes them on); the validators see them as spaces.
    return str(value).replace("\r", " ").replace("\n", " ")


def _route(event: Mapping[str, Any]) -> tuple[Any, Any]:
    """(method, resource) of a REST proxy event, of an HTTP API event (its routeKey) or of a
    function URL event (its raw path)."""
    if event.get("version") == "2.0":
        route_key = str(event.get("routeKey") or "")
        if " " in route_key:
            return tuple(route_key.split(" ", 1))
        http = (event.get("requestContext") or {}).get("http") or {}
        return http.get("method"), event.get("rawPath")
    return event.get("httpMethod"), event.get("resource")


class EventRequest:
    """An openapi-core request made from an API Gateway REST proxy event (payload 1.0), or from
    an HTTP API or Lambda function URL event (payload 2.0: headers already one value each; a
    function URL has no path ids).

    The operation is found by the event's `resource` template (`path_pattern`), exactly the way
    API Gateway routed it, so a path id of any shape still names its operation.
    """

    host_url = HOST_URL

    def __init__(self, event: Mapping[str, Any]) -> None:
        method, resource = _route(event)
        self.resource = str(resource or "")
        self.method = str(method or "").lower()
        path_params = {str(k): str(v) for k, v in (event.get("pathParameters") or {}).items()}
        path = self.resource
        for name, value in path_params.items():
            path = path.replace("{" + name + "}", quote(value, safe="", errors="surrogatepass"))
        self.path = path
        self.path_pattern = self.resource
        headers = Headers(
            _multi(event.get("headers"), event.get("multiValueHeaders"))  # type: ignore[arg-type]
        )
        query = _multi(
            event.get("queryStringParameters"), event.get("multiValueQueryStringParameters")
        )
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(query), header=headers, path=path_params
        )
        # No Content-Type at all: a body of unknown type (matched by a `*/*` media type).
        self.content_type = (headers.get("Content-Type") or "application/octet-stream").lower()
        raw = event.get("body")
        if raw is None:
            self.body: bytes | None = None
        elif event.get("isBase64Encoded"):
            self.body = base64.b64decode(str(raw))
        else:
            self.body = str(raw).encode("utf-8", errors="surrogatepass")


class ProxyResponse:
    """An openapi-core response made from a Lambda proxy response."""

    def __init__(self, result: Mapping[str, Any]) -> None:
        self.status_code = int(result.get("statusCode") or 0)
        self.headers = Headers(
            _multi(result.get("headers"), result.get("multiValueHeaders"))  # type: ignore[arg-type]
        )
        self.content_type = (self.headers.get("Content-Type") or "").lower()
        raw = result.get("body")
        if raw is None or raw == "":
            self.data: bytes | None = None
        elif result.get("isBase64Encoded"):
            self.data = base64.b64decode(str(raw))
        else:
            self.data = str(raw).encode("utf-8", errors="surrogatepass")


def _describe(errors: Iterable[Exception]) -> list[str]:
    lines: list[str] = []
    for error in errors:
        lines.append(f"{type(error).__name__}: {error}")
        cause = error.__cause__
        for detail in getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", ()):
            where = "/".join(str(p) for p in getattr(detail, "absolute_path", ())) or "(root)"
            lines.append(f"    at {where}: {getattr(detail, 'message', detail)}")
        if cause is not None and not getattr(cause, "schema_errors", None):
            lines.append(f"    caused by {type(cause).__name__}: {cause}")
    return lines


def _shown(data: bytes | None) -> str:
    if data is None:
        return "(no body)"
    text = data.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), ensure_ascii=False)
    return text if len(text) <= BODY_SHOWN else text[:BODY_SHOWN] + "..."


def is_documented(event: Mapping[str, Any]) -> bool:
    """Whether the event is an HTTP request (REST proxy or function URL) for an operation of the
    document."""
    method, resource = _route(event)
    if not isinstance(method, str) or not isinstance(resource, str):
        return False
    return (method.upper(), resource) in documented_operations()


def exchange_problems(event: Mapping[str, Any], result: Mapping[str, Any]) -> list[str]:
    """How the event and the handler's proxy response break openapi.yaml (empty: they do not)."""
    if not is_documented(event):
        return []
    request = EventRequest(event)
    response = ProxyResponse(result)
    SEEN.add((request.method.upper(), request.resource, response.status_code))
    problems = _describe(openapi().iter_response_errors(request, response))
    if 200 <= response.status_code < 400:
        parameters, body = _request_validators()
        request_errors = [
            error
            for error in (*parameters.iter_errors(request), *body.iter_errors(request))
            if type(error) is not MissingRequestBody  # an optional body left out
        ]
        if request_errors:
            problems.append("the service accepted a request the document refuses:")
            problems += _describe(request_errors)
    return problems


def check_exchange(event: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    """Raise ContractViolation, saying what and where, if the exchange breaks openapi.yaml."""
    problems = exchange_problems(event, result)
    if not problems:
        return
    response = ProxyResponse(result)
    request = EventRequest(event)
    violation = ContractViolation(
        f"{request.method.upper()} {request.resource} answered {response.status_code} "
        f"({response.content_type or 'no content type'}), which openapi.yaml does not allow:\n  "
        + "\n  ".join(problems)
        + f"\n  response body: {_shown(response.data)}"
        + f"\n  request body: {_shown(request.body)}"
    )
    if threading.current_thread() is not threading.main_thread():
        VIOLATIONS.append(str(violation))
    raise violation


def coverage_summary() -> str:
    """One line: how much of the document the checked exchanges covered."""
    operations = {(method, path) for method, path, _ in SEEN}
    missing = sorted(documented_operations() - operations)
    line = (
        f"openapi.yaml: {len(SEEN)} (operation, status) pairs checked, "
        f"{len(operations)} of {len(documented_operations())} operations seen"
    )
    if missing:
        line += "; not seen: " + ", ".join(f"{method} {path}" for method, path in missing)
    return line
