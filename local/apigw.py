"""A small local API Gateway (REST API, Lambda proxy integration) over template.yaml's routes.

It reads the ``Type: Api`` events of every ``AWS::Serverless::Function``, serves them on loopback
and invokes the real handlers in-process with the event API Gateway would send (payload format 1.0)
and a Lambda-like context. The handler's proxy response goes back to the caller the way API
Gateway would pass it through, including its error answers:

* unknown resource or method: 403 ``{"message":"Missing Authentication Token"}``
* request body over 10 MB: 413; event over Lambda's 6 MB request limit: 413
* handler raised, returned a malformed proxy response or ran past the function's Timeout: 502
  ``{"message": "Internal server error"}``
* handler still running after the 29 s integration timeout: 504
  ``{"message": "Endpoint request timed out"}`` (the worker thread is abandoned, not killed)

What it deliberately does not do:

* SigV4 is **not** verified. Routes whose Auth is ``AWS_IAM`` get a fixed fake IAM identity
  (``arn:aws:iam::000000000000:user/local``) in ``requestContext.identity``.
* Environment: ``os.environ`` is process-wide, so the merged environment is set once in
  :meth:`LocalApiGateway.start` (all functions share Globals.Function's variables) and restored in
  :meth:`LocalApiGateway.stop`. Per-function differences cannot be honoured at the same time.
* Isolation: every function runs in this process, concurrently in threads, sharing module state
  (one warm "container" per function, loaded once); layers are put on ``sys.path`` like /opt/python.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
import json
import logging
import os
import re
import secrets
import string
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from local.template import (
    PSEUDO_PARAMETERS,
    Route,
    api_routes,
    load_template,
    parameter_defaults,
    resolve,
    resources_of_type,
)

__all__ = [
    "INTEGRATION_TIMEOUT_SECONDS",
    "LOCAL_IAM_USER_ARN",
    "MAX_REQUEST_BYTES",
    "LambdaContext",
    "LocalApiGateway",
    "ProxyResponse",
    "build_proxy_event",
    "is_text_content_type",
    "load_handler",
    "match_route",
    "parse_proxy_response",
]

logger = logging.getLogger("local.apigw")

Handler = Callable[[dict[str, Any], Any], Any]
HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]] | None
QueryInput = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]] | str | None

MAX_REQUEST_BYTES: Final = 10 * 1024 * 1024  # API Gateway REST payload limit
MAX_LAMBDA_PAYLOAD_BYTES: Final = 6 * 1024 * 1024  # Lambda synchronous request/response limit
INTEGRATION_TIMEOUT_SECONDS: Final = 29.0  # API Gateway REST integration timeout (default)
LOCAL_ACCOUNT_ID: Final = PSEUDO_PARAMETERS["AWS::AccountId"]
LOCAL_REGION: Final = PSEUDO_PARAMETERS["AWS::Region"]
LOCAL_IAM_USER_ARN: Final = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:user/local"
LOCAL_IAM_USER_ID: Final = "AIDALOCALUSERNOTSIGNED"
LOCAL_ACCESS_KEY: Final = "LOCALACCESSKEYNOTSIGNED"

_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|[\w.+-]*\+json|x-www-form-urlencoded|xml|[\w.+-]*\+xml"
    r"|javascript|x-ndjson))$"
)
_ID_ALPHABET = string.ascii_letters + string.digits
_RESPONSE_KEYS = frozenset(
    {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
)


# ---------------------------------------------------------------------------------------- events


def is_text_content_type(content_type: str | None) -> bool:
    """True for bodies API Gateway passes as text here: text/*, JSON, XML and urlencoded forms."""
    if not content_type:
        return True  # no declared type: text if it decodes as UTF-8
    media_type = content_type.split(";", 1)[0].strip().lower()
    return bool(_TEXT_TYPES.match(media_type))


def _pairs(values: HeaderInput | QueryInput) -> list[tuple[str, str]]:
    if values is None:
        return []
    if isinstance(values, str):
        return parse_qsl(values.lstrip("?"), keep_blank_values=True)
    if isinstance(values, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in values.items():
            if isinstance(value, str):
                pairs.append((key, value))
            else:
                pairs.extend((key, item) for item in value)
        return pairs
    return [(str(key), str(value)) for key, value in values]


def _single_and_multi(
    pairs: list[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    # Like API Gateway: the single-value map keeps the last value of a repeated name; both maps
    # are null when there is nothing to put in them.
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value
        multi.setdefault(key, []).append(value)
    return single, multi


def _random_id(length: int) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _trace_id(now: float) -> str:
    return f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"


def build_proxy_event(
    method: str,
    resource: str,
    path: str,
    path_parameters: Mapping[str, str] | None,
    headers: HeaderInput,
    query: QueryInput,
    body: bytes | None,
    stage: str = "local",
    source_ip: str = "127.0.0.1",
    *,
    iam_auth: bool = False,
    api_id: str = "localapi01",
    domain_name: str | None = None,
    custom_domain: bool = False,
    request_id: str | None = None,
    stage_variables: Mapping[str, str] | None = None,
    now: datetime | None = None,
    add_gateway_headers: bool = True,
    forwarded_proto: str = "https",
) -> dict[str, Any]:
    """A REST API (v1) Lambda proxy integration event, shaped like API Gateway's own.

    ``path`` is the request path as sent (percent-encoding kept, like REST APIs do);
    ``path_parameters`` are the decoded values. ``headers`` and ``query`` take a mapping, a list of
    (name, value) pairs (repeats become multi-value entries) or, for ``query``, a raw query string.
    The body is text when its Content-Type is text, JSON, XML or a urlencoded form and it is valid
    UTF-8; otherwise it is base64 with ``isBase64Encoded: true``.

    With ``add_gateway_headers`` the headers API Gateway adds (Host, X-Forwarded-*, X-Amzn-Trace-Id)
    are filled in when missing (``forwarded_proto`` is the scheme the caller used). ``iam_auth``
    puts the local fake IAM caller into ``requestContext.identity`` (nothing is verified).
    ``custom_domain`` drops the stage from ``requestContext.path``, as API Gateway does for a
    custom domain mapped at the root.
    """
    now = now or datetime.now(UTC)
    epoch = now.timestamp()
    domain = domain_name or f"{api_id}.execute-api.{LOCAL_REGION}.amazonaws.com"
    header_pairs = _pairs(headers)
    if add_gateway_headers:
        present = {key.lower() for key, _ in header_pairs}
        defaults = {
            "Host": domain,
            "X-Amzn-Trace-Id": _trace_id(epoch),
            "X-Forwarded-For": source_ip,
            "X-Forwarded-Port": domain.rsplit(":", 1)[1] if ":" in domain else "443",
            "X-Forwarded-Proto": forwarded_proto,
        }
        header_pairs += [(k, v) for k, v in defaults.items() if k.lower() not in present]
    single_headers, multi_headers = _single_and_multi(header_pairs)
    single_query, multi_query = _single_and_multi(_pairs(query))
    content_type = next((v for k, v in reversed(header_pairs) if k.lower() == "content-type"), None)
    user_agent = next((v for k, v in reversed(header_pairs) if k.lower() == "user-agent"), None)

    body_text: str | None = None
    is_base64 = False
    if body is not None:
        text: str | None = None
        if is_text_content_type(content_type):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            body_text, is_base64 = base64.b64encode(body).decode("ascii"), True
        else:
            body_text = text

    identity: dict[str, Any] = {
        "cognitoIdentityPoolId": None,
        "accountId": None,
        "cognitoIdentityId": None,
        "caller": None,
        "sourceIp": source_ip,
        "principalOrgId": None,
        "accessKey": None,
        "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None,
        "userArn": None,
        "userAgent": user_agent,
        "user": None,
        "apiKey": None,
        "apiKeyId": None,
        "clientCert": None,
    }
    if iam_auth:
        identity.update(
            accountId=LOCAL_ACCOUNT_ID,
            caller=LOCAL_IAM_USER_ID,
            accessKey=LOCAL_ACCESS_KEY,
            userArn=LOCAL_IAM_USER_ARN,
            user=LOCAL_IAM_USER_ID,
        )

    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": dict(path_parameters) if path_parameters else None,
        "stageVariables": dict(stage_variables) if stage_variables else None,
        "requestContext": {
            "resourceId": _random_id(6).lower(),
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "extendedRequestId": _random_id(14) + "=",
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": path if custom_domain else f"/{stage}{path}",
            "accountId": LOCAL_ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": domain.split(".", 1)[0].split(":", 1)[0],
            "requestTimeEpoch": int(epoch * 1000),
            "requestId": request_id or str(uuid.uuid4()),
            "identity": identity,
            "domainName": domain,
            "deploymentId": "localdeploy",
            "apiId": api_id,
        },
        "body": body_text,
        "isBase64Encoded": is_base64,
    }


# --------------------------------------------------------------------------------------- context


@dataclass(slots=True)
class LambdaContext:
    """The parts of Lambda's context object that handlers and Powertools use."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"
            )
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            day = datetime.now(UTC).strftime("%Y/%m/%d")
            self.log_stream_name = f"{day}/[{self.function_version}]{uuid.uuid4().hex}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout (never negative)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# --------------------------------------------------------------------------------------- handlers

_handler_cache: dict[tuple[str, str], Handler] = {}
_handler_lock = threading.Lock()


def load_handler(code_uri: str | Path, handler: str, base_dir: str | Path | None = None) -> Handler:
    """Import ``<code_uri>/<module>.py`` by file path and return its handler function (cached).

    Every function has an ``app.py``, so modules get a unique name derived from their folder
    (``_lambda_charges_<hash of the folder>_app``) instead of the plain ``app``. ``code_uri`` is
    relative to ``base_dir`` (the template's folder; default: the current directory) unless
    absolute.
    """
    module_path, _, attribute = handler.rpartition(".")
    if not module_path or not attribute:
        raise ValueError(f"handler {handler!r} is not of the form module.function")
    root = (Path(base_dir or ".") / code_uri).resolve()
    # "app" -> app.py; "pkg.mod" -> pkg/mod.py (Lambda's dotted module names).
    file = root.joinpath(*module_path.split(".")).with_suffix(".py")
    key = (str(file.resolve()), attribute)
    with _handler_lock:
        if key in _handler_cache:
            return _handler_cache[key]
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
        slug = re.sub(r"\W", "_", root.name or "root") + "_" + digest
        module_name = f"_lambda_{slug}_{re.sub(r'\W', '_', module_path)}"
        module = _import_file(module_name, file)
        function: Any = getattr(module, attribute, None)
        if not callable(function):
            raise AttributeError(f"{file} has no callable {attribute!r}")
        _handler_cache[key] = function
        return function  # type: ignore[no-any-return]


def _import_file(module_name: str, file: Path) -> ModuleType:
    if not file.is_file():
        raise FileNotFoundError(f"handler module {file} does not exist")
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


# ---------------------------------------------------------------------------------------- routing


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


# -------------------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class ProxyResponse:
    """An HTTP answer: status, header pairs (repeats allowed) and body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


# API Gateway's own error bodies, byte for byte (its spacing differs between them).
_MISSING_TOKEN = b'{"message":"Missing Authentication Token"}'
_INTERNAL_ERROR = b'{"message": "Internal server error"}'
_TIMED_OUT = b'{"message": "Endpoint request timed out"}'
_TOO_LONG = b'{"message":"Request Too Long"}'


def _json_error(status: int, body: bytes, error_type: str | None = None) -> ProxyResponse:
    headers = [("Content-Type", "application/json")]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    return ProxyResponse(status, headers, body)


def _bad_gateway() -> ProxyResponse:
    return _json_error(502, _INTERNAL_ERROR)


def parse_proxy_response(result: Any) -> ProxyResponse:
    """Turn a handler's return value into the HTTP answer API Gateway would send.

    A malformed proxy response (not a dict, unknown keys, bad status, bad base64) is a 502 like API
    Gateway's "Malformed Lambda proxy response".
    """
    if not isinstance(result, dict) or not set(result) <= _RESPONSE_KEYS:
        logger.error("Malformed Lambda proxy response: %s", _shape(result))
        return _bad_gateway()
    status = result.get("statusCode", 200)
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        logger.error("Malformed Lambda proxy response: statusCode %r", status)
        return _bad_gateway()
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict) or not isinstance(multi, dict):
        logger.error("Malformed Lambda proxy response: headers are not objects")
        return _bad_gateway()
    # Both maps are merged; a name present in multiValueHeaders takes its values from there.
    multi_names = {name.lower() for name in multi}
    headers = [
        (str(k), _header_value(v)) for k, v in single.items() if k.lower() not in multi_names
    ]
    for name, values in multi.items():
        if not isinstance(values, list):
            logger.error("Malformed Lambda proxy response: multiValueHeaders[%r] not a list", name)
            return _bad_gateway()
        headers.extend((str(name), _header_value(value)) for value in values)
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))

    body = result.get("body")
    if body is None:
        payload = b""
    elif not isinstance(body, str):
        logger.error("Malformed Lambda proxy response: body is %s, not a string", type(body))
        return _bad_gateway()
    elif result.get("isBase64Encoded") is True:
        try:
            payload = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            logger.error("Malformed Lambda proxy response: body is not valid base64")
            return _bad_gateway()
    else:
        payload = body.encode("utf-8")
    return ProxyResponse(status, headers, payload)


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return f"object with keys {sorted(map(str, value))}"
    return type(value).__name__


# ----------------------------------------------------------------------------------------- server


class LocalApiGateway:
    """Serves a template's REST API routes on loopback and invokes their handlers in-process.

    ``env`` is the environment every function sees; it is applied to ``os.environ`` in
    :meth:`start` and the previous values are restored in :meth:`stop`. It may be a callable that
    receives the bound base URL (handy with ``port=0`` for ``PUBLIC_BASE_URL``). Use ``port=0`` for
    a free port (read it back from :attr:`url`).
    """

    def __init__(
        self,
        template_path: str | Path,
        env: Mapping[str, str] | Callable[[str], Mapping[str, str]],
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        stage: str | None = None,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
        preload: bool = True,
    ) -> None:
        self.template_path = Path(template_path).resolve()
        self.base_dir = self.template_path.parent
        self.template = load_template(self.template_path)
        self.routes = api_routes(self.template)
        self._env_source = env
        self.env: dict[str, str] = dict(env) if isinstance(env, Mapping) else {}
        self.stage = stage or self._template_stage()
        self.integration_timeout = integration_timeout
        self.preload = preload
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._saved_env: dict[str, str | None] = {}

    def _template_stage(self) -> str:
        stages = {
            resolve(api["Properties"]["StageName"], parameter_defaults(self.template), {})
            for api in resources_of_type(self.template, "AWS::Serverless::Api").values()
            if "StageName" in (api.get("Properties") or {})
        }
        return stages.pop() if len(stages) == 1 else "local"

    @property
    def url(self) -> str:
        """Base URL of the running API, e.g. ``http://127.0.0.1:3000`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("LocalApiGateway is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("LocalApiGateway is not started")
        return int(self._server.server_address[1])

    def start(self) -> LocalApiGateway:
        """Apply the environment, put layers on ``sys.path``, load handlers, start serving."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self._host, self._port), _RequestHandler)
        server.daemon_threads = True
        server.gateway = self  # type: ignore[attr-defined]
        self._server = server
        try:
            if not isinstance(self._env_source, Mapping):
                self.env = dict(self._env_source(self.url))
            for name, value in self.env.items():
                self._saved_env.setdefault(name, os.environ.get(name))
                os.environ[name] = value
            for layer in sorted({layer for route in self.routes for layer in route.layers}):
                layer_path = str((self.base_dir / layer).resolve())
                if layer_path not in sys.path:
                    sys.path.insert(0, layer_path)
            if self.preload:
                for route in self.routes:
                    load_handler(route.code_uri, route.handler, self.base_dir)
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(
            target=server.serve_forever, name="local-apigw", daemon=True
        )
        self._thread.start()
        logger.warning(
            "Local API Gateway on %s: IAM (SigV4) signatures are NOT verified; AWS_IAM routes "
            "see the fake caller %s",
            self.url,
            LOCAL_IAM_USER_ARN,
        )
        for route in self.routes:
            logger.info(
                "  %-6s %s -> %s (auth %s)",
                route.method,
                route.resource,
                route.function_id,
                route.auth,
            )
        return self

    def stop(self) -> None:
        """Stop serving and restore the environment variables :meth:`start` changed."""
        if self._server is not None:
            if self._thread is not None:  # shutdown() waits for serve_forever(): only if it ran
                self._server.shutdown()
                self._thread.join(timeout=5)
                self._thread = None
            self._server.server_close()
            self._server = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def __enter__(self) -> LocalApiGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- one request ------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        source_ip: str,
        host: str | None,
    ) -> tuple[ProxyResponse, str]:
        """Route, build the event, invoke, translate. Returns the answer and the request id."""
        request_id = str(uuid.uuid4())
        split = urlsplit(target)
        found = match_route(self.routes, method, split.path)
        if found is None:
            return _json_error(
                403, _MISSING_TOKEN, "MissingAuthenticationTokenException"
            ), request_id
        route, params = found
        event = build_proxy_event(
            method,
            route.resource,
            split.path,
            params,
            headers,
            split.query,
            body,
            stage=self.stage,
            source_ip=source_ip,
            iam_auth=route.auth == "AWS_IAM",
            domain_name=host,
            custom_domain=True,
            request_id=request_id,
            forwarded_proto="http",
        )
        if len(json.dumps(event)) > MAX_LAMBDA_PAYLOAD_BYTES:
            return _json_error(413, _TOO_LONG), request_id
        return self._invoke(route, event, request_id), request_id

    def _invoke(self, route: Route, event: dict[str, Any], request_id: str) -> ProxyResponse:
        try:
            handler = load_handler(route.code_uri, route.handler, self.base_dir)
        except Exception:
            logger.exception("Cannot load %s (%s)", route.function_id, route.handler)
            return _bad_gateway()
        context = LambdaContext(
            function_name=route.function_id,
            memory_limit_in_mb=route.memory,
            timeout_seconds=route.timeout,
            aws_request_id=str(uuid.uuid4()),
        )
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = handler(event, context)
            except BaseException as error:  # reported below, like Lambda's function error
                outcome["error"] = error

        worker = threading.Thread(target=run, name=f"lambda-{route.function_id}", daemon=True)
        worker.start()
        worker.join(min(float(route.timeout), self.integration_timeout))
        if worker.is_alive():
            if route.timeout < self.integration_timeout:
                logger.error(
                    "%s Task timed out after %.2f seconds (request %s)",
                    route.function_id,
                    route.timeout,
                    request_id,
                )
                return _bad_gateway()
            logger.error("Execution failed due to a timeout error (request %s)", request_id)
            return _json_error(504, _TIMED_OUT)
        if "error" in outcome:
            error = outcome["error"]
            logger.error(
                "%s raised %s (request %s)",
                route.function_id,
                type(error).__name__,
                request_id,
                exc_info=error,
            )
            return _bad_gateway()
        result = outcome.get("result")
        try:
            size = len(json.dumps(result))
        except (TypeError, ValueError):
            logger.error("Lambda response is not JSON-serialisable (request %s)", request_id)
            return _bad_gateway()
        if size > MAX_LAMBDA_PAYLOAD_BYTES:
            logger.error("Lambda response of %d bytes exceeds 6 MB (request %s)", size, request_id)
            return _bad_gateway()
        return parse_proxy_response(result)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-apigw"
    sys_version = ""

    def _serve(self) -> None:
        gateway: LocalApiGateway = self.server.gateway  # type: ignore[attr-defined]
        started = time.monotonic()
        body, too_long = self._read_body()
        if too_long:
            answer, request_id = _json_error(413, _TOO_LONG), str(uuid.uuid4())
            self.close_connection = True
        else:
            answer, request_id = gateway.handle(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                self.client_address[0],
                self.headers.get("Host"),
            )
        self.send_response(answer.status)
        for name, value in answer.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("x-amz-apigw-id", _random_id(14) + "=")
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        logger.info(
            '%s "%s %s" %d %dB %.0fms %s',
            self.client_address[0],
            self.command,
            urlsplit(self.path).path,
            answer.status,
            len(answer.body),
            (time.monotonic() - started) * 1000,
            request_id,
        )

    def _read_body(self) -> tuple[bytes | None, bool]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_REQUEST_BYTES:
                    return None, True
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks), False
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            return None, True
        return (self.rfile.read(length) if length else None), False

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)
