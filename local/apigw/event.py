"""Builds the events HTTP requests reach handlers with: API Gateway's REST API Lambda proxy events
(payload format 1.0), its HTTP API events and Lambda function URL events (payload format 2.0).

No sockets here: :func:`build_proxy_event` turns a request's parts into the REST event, with the
local fake IAM caller for ``AWS_IAM`` routes (nothing is verified); :func:`build_http_api_event`
into an HTTP API route's; :func:`build_function_url_event` into a function URL's.
"""

from __future__ import annotations

import base64
import re
import secrets
import string
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from local.template import PSEUDO_PARAMETERS

__all__ = [
    "LOCAL_ACCOUNT_ID",
    "LOCAL_IAM_USER_ARN",
    "LOCAL_REGION",
    "HeaderInput",
    "QueryInput",
    "build_function_url_event",
    "build_http_api_event",
    "build_proxy_event",
    "build_route_event",
    "is_text_content_type",
    "random_id",
]

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]] | None
QueryInput = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]] | str | None

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
# Random bytes to id characters in one translate (the slight bias of 256 % 62 does not matter for
# a fake id; one urandom call instead of one per character, three ids a request).
_ID_TABLE = bytes.maketrans(bytes(range(256)), (_ID_ALPHABET * 5)[:256].encode())


def is_text_content_type(content_type: str | None) -> bool:
    """True for bodies API Gateway passes as text here: text/*, JSON, XML and urlencoded forms."""
    if not content_type:
        return True  # no declared type: text if it decodes as UTF-8
    media_type = content_type.split(";", 1)[0].strip().lower()
    return bool(_TEXT_TYPES.match(media_type))


def random_id(length: int) -> str:
    """A random alphanumeric id, like API Gateway's resource and extended request ids."""
    return secrets.token_bytes(length).translate(_ID_TABLE).decode()


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


def _trace_id(now: float) -> str:
    return f"Root=1-{int(now):08x}-{secrets.token_hex(12)}"


def _gateway_headers(
    header_pairs: list[tuple[str, str]], domain: str, epoch: float, source_ip: str, proto: str
) -> list[tuple[str, str]]:
    # The headers API Gateway adds, where the caller did not send them.
    present = {key.lower() for key, _ in header_pairs}
    defaults = {
        "Host": domain,
        "X-Amzn-Trace-Id": _trace_id(epoch),
        "X-Forwarded-For": source_ip,
        "X-Forwarded-Port": domain.rsplit(":", 1)[1] if ":" in domain else "443",
        "X-Forwarded-Proto": proto,
    }
    return [(k, v) for k, v in defaults.items() if k.lower() not in present]


def _last_header(header_pairs: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in reversed(header_pairs) if k.lower() == name), None)


def _event_body(body: bytes | None, content_type: str | None) -> tuple[str | None, bool]:
    # Text when the content type is textual and the bytes are UTF-8; otherwise base64, flagged.
    if body is None:
        return None, False
    if is_text_content_type(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _identity(source_ip: str, user_agent: str | None, *, iam_auth: bool) -> dict[str, Any]:
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
    return identity


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
        header_pairs += _gateway_headers(header_pairs, domain, epoch, source_ip, forwarded_proto)
    single_headers, multi_headers = _single_and_multi(header_pairs)
    single_query, multi_query = _single_and_multi(_pairs(query))
    body_text, is_base64 = _event_body(body, _last_header(header_pairs, "content-type"))
    user_agent = _last_header(header_pairs, "user-agent")

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
            "resourceId": random_id(6).lower(),
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "extendedRequestId": random_id(14) + "=",
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": path if custom_domain else f"/{stage}{path}",
            "accountId": LOCAL_ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": domain.split(".", 1)[0].split(":", 1)[0],
            "requestTimeEpoch": int(epoch * 1000),
            "requestId": request_id or str(uuid.uuid4()),
            "identity": _identity(source_ip, user_agent, iam_auth=iam_auth),
            "domainName": domain,
            "deploymentId": "localdeploy",
            "apiId": api_id,
        },
        "body": body_text,
        "isBase64Encoded": is_base64,
    }


def build_function_url_event(
    method: str,
    path: str,
    headers: HeaderInput,
    query: QueryInput,
    body: bytes | None,
    source_ip: str = "127.0.0.1",
    *,
    url_id: str = "localurl0000000000000000000000000",
    domain_name: str | None = None,
    request_id: str | None = None,
    now: datetime | None = None,
    forwarded_proto: str = "https",
) -> dict[str, Any]:
    """A Lambda function URL event (payload format 2.0, AuthType NONE), shaped like Lambda's own.

    ``path`` is the request path as sent (``rawPath``; ``requestContext.http.path`` too). Header
    names are lower case and a repeated header's values are joined with commas, as are a
    repeated query parameter's; cookies move from the Cookie header to ``cookies``. The body
    follows the same text-or-base64 rule as :func:`build_proxy_event`; ``body`` is absent when
    there is none. Lambda adds the Host, X-Forwarded-* and X-Amzn-Trace-Id headers.
    """
    now = now or datetime.now(UTC)
    epoch = now.timestamp()
    domain = domain_name or f"{url_id}.lambda-url.{LOCAL_REGION}.on.aws"
    header_pairs = _pairs(headers)
    header_pairs += _gateway_headers(header_pairs, domain, epoch, source_ip, forwarded_proto)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in header_pairs:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    query_pairs = _pairs(query)
    parameters: dict[str, str] = {}
    for key, value in query_pairs:
        parameters[key] = f"{parameters[key]},{value}" if key in parameters else value
    body_text, is_base64 = _event_body(body, joined.get("content-type"))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query.lstrip("?")
        if isinstance(query, str)
        else urlencode(query_pairs, errors="surrogatepass"),
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": domain,
            "domainPrefix": url_id,
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": request_id or str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(epoch * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if cookies:
        event["cookies"] = cookies
    if parameters:
        event["queryStringParameters"] = parameters
    if body_text is not None:
        event["body"] = body_text
    return event


def build_http_api_event(
    method: str,
    resource: str,
    path: str,
    path_parameters: Mapping[str, str] | None,
    headers: HeaderInput,
    query: QueryInput,
    body: bytes | None,
    source_ip: str = "127.0.0.1",
    *,
    iam_auth: bool = False,
    api_id: str = "localhttp0",
    domain_name: str | None = None,
    request_id: str | None = None,
    now: datetime | None = None,
    forwarded_proto: str = "https",
) -> dict[str, Any]:
    """An HTTP API (API Gateway v2) Lambda proxy event, payload format 2.0, on its ``$default``
    stage: the function URL event's shape (:func:`build_function_url_event`; headers and query
    follow the same rules), with the matched route in ``routeKey`` ("POST /charges"), its
    ``pathParameters`` (decoded values), the API's account and, with ``iam_auth``, the local
    fake IAM caller in ``requestContext.authorizer.iam`` (nothing is verified).
    """
    domain = domain_name or f"{api_id}.execute-api.{LOCAL_REGION}.amazonaws.com"
    event = build_function_url_event(
        method,
        path,
        headers,
        query,
        body,
        source_ip,
        url_id=api_id,
        domain_name=domain,
        request_id=request_id,
        now=now,
        forwarded_proto=forwarded_proto,
    )
    route_key = f"{method.upper()} {resource}"
    event["routeKey"] = route_key
    context = event["requestContext"]
    context.update(
        accountId=LOCAL_ACCOUNT_ID,
        domainPrefix=domain.split(".", 1)[0].split(":", 1)[0],
        routeKey=route_key,
    )
    if iam_auth:
        context["authorizer"] = {
            "iam": {
                "accessKey": LOCAL_ACCESS_KEY,
                "accountId": LOCAL_ACCOUNT_ID,
                "callerId": LOCAL_IAM_USER_ID,
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": LOCAL_IAM_USER_ARN,
                "userId": LOCAL_IAM_USER_ID,
            }
        }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    return event


def build_route_event(
    http_api: bool,
    method: str,
    resource: str,
    path: str,
    path_parameters: Mapping[str, str] | None,
    headers: HeaderInput,
    query: QueryInput,
    body: bytes | None,
    source_ip: str = "127.0.0.1",
    *,
    iam_auth: bool = False,
    stage: str = "local",
    domain_name: str | None = None,
    custom_domain: bool = False,
    request_id: str | None = None,
    forwarded_proto: str = "https",
) -> dict[str, Any]:
    """The event a route's API sends: an HTTP API's (payload 2.0; `stage` and `custom_domain`
    do not apply to its `$default` stage) or a REST API's (payload 1.0)."""
    if http_api:
        return build_http_api_event(
            method,
            resource,
            path,
            path_parameters,
            headers,
            query,
            body,
            source_ip,
            iam_auth=iam_auth,
            domain_name=domain_name,
            request_id=request_id,
            forwarded_proto=forwarded_proto,
        )
    return build_proxy_event(
        method,
        resource,
        path,
        path_parameters,
        headers,
        query,
        body,
        stage,
        source_ip,
        iam_auth=iam_auth,
        domain_name=domain_name,
        custom_domain=custom_domain,
        request_id=request_id,
        forwarded_proto=forwarded_proto,
    )
