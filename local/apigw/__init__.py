"""A small local API Gateway (REST and HTTP APIs, Lambda proxy integration) over template.yaml's
routes.

It reads the ``Type: Api`` and ``Type: HttpApi`` events of every ``AWS::Serverless::Function``,
serves them on loopback (one port for both APIs: their paths do not clash) and invokes the real
handlers with the event API Gateway would send (payload format 1.0 for a REST route, 2.0 for an
HTTP API route) and a Lambda-like context. The handler's proxy response goes back to the caller
the way API Gateway would pass it through, including its error answers:

* unknown resource or method: 403 ``{"message":"Missing Authentication Token"}``
* request body over 10 MB: 413; event over Lambda's 6 MB request limit: 413
* handler raised, returned a malformed proxy response or ran past the function's Timeout: 502
  ``{"message": "Internal server error"}``
* handler still running after the 29 s integration timeout: 504
  ``{"message": "Endpoint request timed out"}`` (the worker thread is abandoned, not killed)

What it deliberately does not do:

* SigV4 is **not** verified. Routes whose Auth is ``AWS_IAM`` get a fixed fake IAM identity
  (``arn:aws:iam::000000000000:user/local``) in ``requestContext.identity`` (REST) or
  ``requestContext.authorizer.iam`` (HTTP API).
* Gateway refusals are the REST API's (an unknown route is 403 "Missing Authentication Token"
  on either API; a real HTTP API answers 404 ``{"message":"Not Found"}``).
* Environment: ``os.environ`` is process-wide, so the merged environment is set once in
  :meth:`LocalApiGateway.start` (all functions share Globals.Function's variables) and restored in
  :meth:`LocalApiGateway.stop`. Per-function differences cannot be honoured at the same time.
* Isolation: every function runs in this process, concurrently in threads, sharing module state
  (one warm "container" per function, loaded once); layers are put on ``sys.path`` like /opt/python.
  Powertools' log keys are the exception: each invocation gets its own (``function_name`` and the
  rest stay its own while others run, see :mod:`~local.apigw.runtime`).
  Opt-in (``processes=N``; `make run` uses 2): the handlers run in N worker processes instead
  (:mod:`~local.apigw.pool`), each a warm container for every function, with the same events,
  contexts and environment; this process still serves HTTP and builds the events.

The paths of the template's Lambda function URLs (``FunctionUrlConfig``; the paths are the
function's ``Metadata.FunctionUrlPaths``) are served on the same port with function URL events
(payload format 2.0), as Lambda would send them (no API Gateway in between).

Modules: :mod:`~local.apigw.event` builds proxy and function URL events,
:mod:`~local.apigw.runtime` loads and runs handlers, :mod:`~local.apigw.integration` picks
routes and translates outcomes into answers,
:mod:`~local.apigw.server` serves HTTP, :mod:`~local.apigw.docs` the API document and its
reference page (``/openapi.json``, ``/docs``; local only). Their public names are re-exported here.
"""

from local.apigw.docs import ApiDocs
from local.apigw.event import (
    LOCAL_IAM_USER_ARN,
    build_function_url_event,
    build_http_api_event,
    build_proxy_event,
    build_route_event,
    is_text_content_type,
)
from local.apigw.integration import (
    INTEGRATION_TIMEOUT_SECONDS,
    MAX_REQUEST_BYTES,
    ProxyResponse,
    match_route,
    parse_proxy_response,
)
from local.apigw.runtime import LambdaContext, call_handler, invocation_log_keys, load_handler
from local.apigw.server import LocalApiGateway, LocalEndpoint

__all__ = [
    "INTEGRATION_TIMEOUT_SECONDS",
    "LOCAL_IAM_USER_ARN",
    "MAX_REQUEST_BYTES",
    "ApiDocs",
    "LambdaContext",
    "LocalApiGateway",
    "LocalEndpoint",
    "ProxyResponse",
    "build_function_url_event",
    "build_http_api_event",
    "build_proxy_event",
    "build_route_event",
    "call_handler",
    "invocation_log_keys",
    "is_text_content_type",
    "load_handler",
    "match_route",
    "parse_proxy_response",
]
