"""A small router for HTTP events, shared by every API function.

Two event shapes arrive, and `Request.from_event` is the one place that reads either:

* API Gateway REST proxy events (payload 1.0): API Gateway already matched the route, so the
  event names its `resource` template and path parameters;
* API Gateway HTTP API events (payload 2.0; the merchant API): the event's `routeKey`
  ("POST /charges/{chargeId}/capture") names the matched route, with its path parameters and,
  on IAM routes, the signer in `requestContext.authorizer.iam`;
* Lambda function URL events (payload 2.0, `routeKey` "$default"; the postLink function): a
  function URL takes every path, so the raw path is the resource and there are no path
  parameters (a function URL's routes are literal paths).

Routing is then a dictionary lookup on (method, resource). Each request is handed to its
route as a value (no per-instance "current event", so concurrent invocations in the local stack
cannot mix), and every error is mapped to an answer in one place. Powertools' resolver did the same
but its package import costs ~70 ms of every cold start (docs/decisions.md).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from payments.errors import NotFoundError, PaymentsError, ValidationError
from payments.http import bodies
from payments.observability import logger


class Context(Protocol):
    """The part of the Lambda context routes use."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


@dataclass(frozen=True)
class Request:
    """One HTTP request (REST proxy or function URL event), as routes need it."""

    method: str
    resource: str
    path_params: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names lower-cased
    body: str | None
    is_base64_encoded: bool
    source_ip: str | None
    # Who signed the request (IAM routes): the caller's ARN (`userArn`), else its id (`caller`,
    # REST; `callerId`, HTTP API); None on a public route. Operator actions record it for audit.
    caller: str | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Request:
        """Read a REST proxy event (payload 1.0), an HTTP API event or a function URL event
        (both payload 2.0)."""
        context = event.get("requestContext") or {}
        if event.get("version") == "2.0":
            http = context.get("http") or {}
            route_key = str(event.get("routeKey") or "")
            if " " in route_key:  # an HTTP API route: "METHOD /resource"
                method, resource = route_key.split(" ", 1)
                path_params = dict(event.get("pathParameters") or {})
            else:  # "$default": a function URL (every path reaches it)
                method = str(http.get("method") or "")
                resource = str(event.get("rawPath") or http.get("path") or "")
                path_params = {}
            iam = (context.get("authorizer") or {}).get("iam") or {}
            return cls(
                method=method.upper(),
                resource=resource,
                path_params=path_params,
                query=dict(event.get("queryStringParameters") or {}),
                headers={str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()},
                body=event.get("body"),
                is_base64_encoded=bool(event.get("isBase64Encoded")),
                source_ip=http.get("sourceIp"),
                caller=_caller(iam),
            )
        identity = context.get("identity") or {}
        return cls(
            method=str(event.get("httpMethod") or ""),
            resource=str(event.get("resource") or ""),
            path_params=dict(event.get("pathParameters") or {}),
            query=dict(event.get("queryStringParameters") or {}),
            headers={str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()},
            body=event.get("body"),
            is_base64_encoded=bool(event.get("isBase64Encoded")),
            source_ip=identity.get("sourceIp"),
            caller=_caller(identity),
        )

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return self.headers.get(name.lower())

    def body_bytes(self) -> bytes | None:
        """The body as sent by the client (base64 undone)."""
        if self.body is None:
            return None
        if not self.is_base64_encoded:
            try:
                return self.body.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate: no client sent these bytes
                raise ValidationError("the request body is not valid UTF-8") from exc
        try:
            return base64.b64decode(self.body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationError("the request body is not valid base64") from exc

    def json_body(self, *, required: bool = True) -> Any:
        """The body of a merchant JSON route, decoded strictly (bodies.parse_json_body).

        A body must come as `application/json` (415 otherwise, before it is read); no body is
        None where it is optional, whatever the Content-Type.
        """
        if self.body:
            bodies.require_json_content_type(self.header("Content-Type"))
        return bodies.parse_json_body(self.body_bytes(), required=required)


def _caller(identity: Mapping[str, Any]) -> str | None:
    """The signed caller of an IAM route: its ARN, else its id; None when neither is a string."""
    for name in ("userArn", "caller", "callerId"):
        value = identity.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True)
class Reply:
    """An answer: status, body text and headers."""

    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_proxy(self) -> dict[str, Any]:
        """The proxy response API Gateway expects (a function URL reads the same shape)."""
        return {
            "statusCode": self.status,
            "headers": dict(self.headers),
            "body": self.body,
            "isBase64Encoded": False,
        }


Route = Callable[[Request, Context], Reply]


def json_response(status: int, body: Mapping[str, Any], **headers: str) -> Reply:
    """A JSON answer with exact money and `Cache-Control: no-store`."""
    return Reply(status, bodies.dumps(body), {**bodies.JSON_HEADERS, **headers})


def json_error(error: Exception) -> Reply:
    """Our errors become their HTTP status and a JSON body with a stable code; bugs a bare 500."""
    if isinstance(error, PaymentsError):
        if error.http_status >= 500:
            logger.warning(
                "request failed", extra={"code": error.code, "error": type(error).__name__}
            )
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        return json_response(error.http_status, bodies.error_body(error), **headers)
    # A bug: logged with its traceback; the answer is a bare 500 and no state was changed.
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return json_response(500, bodies.error_body(PaymentsError("internal error")))


PathIdRule = Callable[[str], bool]


class Router:
    """Routes by (HTTP method, API Gateway resource template, or a function URL's raw path).

    `path_ids` maps a path parameter (e.g. `chargeId`) to the shape its ids have: a value of
    another shape is a 404 before the route runs, so no store is ever asked for a key it would
    refuse (too long, empty) or that cannot exist.
    """

    def __init__(
        self,
        on_error: Callable[[Exception], Reply] = json_error,
        path_ids: Mapping[str, PathIdRule] | None = None,
    ) -> None:
        self._routes: dict[tuple[str, str], Route] = {}
        self._on_error = on_error
        self._path_ids = dict(path_ids or {})

    def route(self, method: str, resource: str) -> Callable[[Route], Route]:
        """Register a route function for `method` and `resource` (e.g. /charges/{chargeId})."""

        def register(function: Route) -> Route:
            self._routes[(method.upper(), resource)] = function
            return function

        return register

    def resolve(self, event: Mapping[str, Any], context: Context) -> dict[str, Any]:
        """Answer one event; every exception becomes an answer through `on_error`."""
        request = Request.from_event(event)
        route = self._routes.get((request.method, request.resource))
        try:
            if route is None:
                raise _NoRoute(f"no route for {request.method} {request.resource}"[:120])
            self._check_path_ids(request)
            reply = route(request, context)
        except Exception as error:  # every error becomes an answer; on_error logs the unexpected
            reply = self._on_error(error)
        return reply.to_proxy()

    def _check_path_ids(self, request: Request) -> None:
        for name, value in request.path_params.items():
            rule = self._path_ids.get(name)
            if rule is not None and not (isinstance(value, str) and rule(value)):
                raise NotFoundError(f"no such {name.removesuffix('Id')}")


class _NoRoute(PaymentsError):
    code = "not_found"
    http_status = 404
