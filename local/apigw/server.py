"""Serves a template's REST and HTTP API routes over HTTP on loopback: :class:`LocalApiGateway`.
The paths of its Lambda function URLs are served on the same port, with function URL (payload
2.0) events.

One thread per connection (daemonic), a listen backlog big enough for bursts of a few hundred
connections and Nagle's algorithm off on accepted sockets. The process-wide environment and the
layers on ``sys.path`` are set up in :meth:`LocalApiGateway.start` and undone in
:meth:`LocalApiGateway.stop`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

from local.apigw.docs import ApiDocs
from local.apigw.event import (
    LOCAL_IAM_USER_ARN,
    build_function_url_event,
    build_route_event,
    random_id,
)
from local.apigw.integration import (
    INTEGRATION_TIMEOUT_SECONDS,
    MAX_REQUEST_BYTES,
    ProxyResponse,
    integrate,
    match_route,
    missing_token,
    too_long,
)
from local.apigw.pool import HandlerPool
from local.apigw.runtime import load_handler
from local.template import (
    Route,
    api_routes,
    function_url_routes,
    load_template,
    parameter_defaults,
    resolve,
    resources_of_type,
)

__all__ = ["LISTEN_BACKLOG", "LocalApiGateway", "LocalEndpoint"]

#: A local-only endpoint (e.g. ``/_local/events``): called with the method and the raw query.
LocalEndpoint = Callable[[str, str], ProxyResponse]

logger = logging.getLogger("local.apigw")

# socketserver's default backlog is 5: a burst of concurrent connects overflows it and callers
# see resets. The kernel caps this at net.core.somaxconn.
LISTEN_BACKLOG: Final = 1024


def simulator_control(base_url: str, method: str, path: str, body: bytes | None) -> ProxyResponse:
    """Pass a ``/_sim/...`` control request to the ePay simulator and relay its answer."""
    request = urllib.request.Request(
        base_url.rstrip("/") + path,
        data=body,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:  # nosec B310 # loopback http
            status, data = answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        status, data = refused.code, refused.read()
    return ProxyResponse(status, [("Content-Type", "application/json")], data)


class LocalApiGateway:
    """Serves a template's REST API routes on loopback and invokes their handlers in-process.

    The paths of the template's function URLs (:func:`~local.template.function_url_routes`) are
    served on the same port: a request no REST route takes goes to the function URL path it
    matches exactly, with a function URL event (AWS gives each function URL its own host).

    ``env`` is the environment every function sees; it is applied to ``os.environ`` in
    :meth:`start` and the previous values are restored in :meth:`stop`. It may be a callable that
    receives the bound base URL (handy with ``port=0`` for ``PUBLIC_BASE_URL``). Use ``port=0`` for
    a free port (read it back from :attr:`url`). ``docs`` adds the local-only ``/openapi.json``
    and ``/docs`` (:class:`~local.apigw.docs.ApiDocs`); ``local_endpoints`` other local-only paths
    (path -> :data:`LocalEndpoint`, e.g. ``/_local/events``), answered before the template's routes.

    ``processes`` > 0 runs the handlers in that many worker processes (:mod:`local.apigw.pool`)
    instead of this process's threads; ``worker_output`` is where their stdout goes (None: this
    process's stdout).
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
        docs: ApiDocs | None = None,
        simulator_url: str | None = None,
        local_endpoints: Mapping[str, LocalEndpoint] | None = None,
        processes: int = 0,
        worker_output: str | None = None,
    ) -> None:
        self.template_path = Path(template_path).resolve()
        self.base_dir = self.template_path.parent
        self.template = load_template(self.template_path)
        self.routes = api_routes(self.template)
        self.url_routes = function_url_routes(self.template)
        self._env_source = env
        self.env: dict[str, str] = dict(env) if isinstance(env, Mapping) else {}
        self.stage = stage or self._template_stage()
        self.integration_timeout = integration_timeout
        self.preload = preload
        # Local only: /openapi.json and the /docs reference (local.apigw.docs), never a route
        # of the template.
        self.docs = docs
        # Local only: /_sim/... is passed to the ePay simulator's control endpoints, so examples
        # can inject faults at the API's fixed address (the simulator's port is free-picked).
        self.simulator_url = simulator_url
        # Local only: paths such as /_local/events (local.events_feed), never template routes.
        self.local_endpoints: dict[str, LocalEndpoint] = dict(local_endpoints or {})
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._saved_env: dict[str, str | None] = {}
        self.processes = processes
        self._worker_output = worker_output
        self.pool: HandlerPool | None = None

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
        self._server = server = _Server((self._host, self._port), self)
        try:
            self._prepare()
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
        for route in self.url_routes:
            logger.info(
                "  %-6s %s -> %s (function URL, auth %s)",
                route.method,
                route.resource,
                route.function_id,
                route.auth,
            )
        return self

    def _prepare(self) -> None:
        # Environment, layers (like /opt/python) and, with preload, every handler's module.
        if not isinstance(self._env_source, Mapping):
            self.env = dict(self._env_source(self.url))
        for name, value in self.env.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        every_route = [*self.routes, *self.url_routes]
        layer_paths = [
            str((self.base_dir / layer).resolve())
            for layer in sorted({layer for route in every_route for layer in route.layers})
        ]
        for layer_path in layer_paths:
            if layer_path not in sys.path:
                sys.path.insert(0, layer_path)
        if self.processes > 0:
            # The workers import the handlers; this process only routes and translates.
            self.pool = HandlerPool(
                self.processes,
                env=self.env,
                layers=layer_paths,
                handlers=[(route.code_uri, route.handler) for route in every_route],
                base_dir=self.base_dir,
                output=self._worker_output,
            ).start()
        elif self.preload:
            for route in every_route:
                load_handler(route.code_uri, route.handler, self.base_dir)

    def stop(self) -> None:
        """Stop serving, stop the worker processes, restore the environment :meth:`start`
        changed."""
        if self._server is not None:
            if self._thread is not None:  # shutdown() waits for serve_forever(): only if it ran
                self._server.shutdown()
                self._thread.join(timeout=5)
                self._thread = None
            self._server.server_close()
            self._server = None
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
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
        if self.docs is not None and self.docs.serves(method, split.path):
            return self.docs.handle(split.path, self.url), request_id
        local_endpoint = self.local_endpoints.get(split.path)
        if local_endpoint is not None:
            return local_endpoint(method, split.query), request_id
        if self.simulator_url is not None and split.path.startswith("/_sim/"):
            return simulator_control(self.simulator_url, method, split.path, body), request_id
        found = match_route(self.routes, method, split.path)
        if found is None:
            url_route = self._url_route(split.path)
            if url_route is None:
                return missing_token(), request_id
            return self._function_url(
                url_route, method, split, headers, body, source_ip, host, request_id
            ), request_id
        route, params = found
        event = build_route_event(
            route.http_api,
            method,
            route.resource,
            split.path,
            params,
            headers,
            split.query,
            body,
            source_ip,
            iam_auth=route.auth == "AWS_IAM",
            stage=self.stage,
            domain_name=host,
            custom_domain=True,
            request_id=request_id,
            forwarded_proto="http",
        )
        answer = integrate(
            route,
            event,
            request_id,
            base_dir=self.base_dir,
            integration_timeout=self.integration_timeout,
            pool=self.pool,
        )
        return answer, request_id

    def _url_route(self, path: str) -> Route | None:
        return next((r for r in self.url_routes if r.match(path) == {}), None)

    def _function_url(
        self,
        route: Route,
        method: str,
        split: SplitResult,
        headers: list[tuple[str, str]],
        body: bytes | None,
        source_ip: str,
        host: str | None,
        request_id: str,
    ) -> ProxyResponse:
        # A function URL: no API Gateway in between, so no 29 s integration limit (the
        # function's own Timeout ends it); its answer is read like a proxy response.
        event = build_function_url_event(
            method,
            split.path,
            headers,
            split.query,
            body,
            source_ip,
            domain_name=host,
            request_id=request_id,
            forwarded_proto="http",
        )
        return integrate(
            route,
            event,
            request_id,
            base_dir=self.base_dir,
            integration_timeout=max(self.integration_timeout, float(route.timeout)),
            pool=self.pool,
        )


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True  # a handler abandoned at the integration timeout must not block exit

    def __init__(self, address: tuple[str, int], gateway: LocalApiGateway) -> None:
        self.gateway = gateway
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-apigw"
    sys_version = ""
    # Headers and body go out in separate writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms a request on Linux loopback).
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        started = time.monotonic()
        body, over_limit = self._read_body()
        if over_limit:
            answer, request_id = too_long(), str(uuid.uuid4())
            self.close_connection = True
        else:
            answer, request_id = self.server.gateway.handle(
                self.command,
                self.path,
                list(self.headers.items()),
                body,
                self.client_address[0],
                self.headers.get("Host"),
            )
        self._send(answer, request_id)
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

    def _send(self, answer: ProxyResponse, request_id: str) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("x-amzn-RequestId", request_id)
        self.send_header("x-amz-apigw-id", random_id(14) + "=")
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def _read_body(self) -> tuple[bytes | None, bool]:
        # The body, and whether it is over API Gateway's 10 MB limit (then it is not read).
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            return None, True
        return (self.rfile.read(length) if length else None), False

    def _read_chunked(self) -> tuple[bytes | None, bool]:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks), False
            total += size
            if total > MAX_REQUEST_BYTES:
                return None, True
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)
