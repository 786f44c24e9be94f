"""The errors the client raises: one hierarchy that carries the API's facts.

Every error answer of the API is `{"error": {"code", "message", "fields"}}`; the client turns it
into the subclass for its HTTP status, keeping the code, message, fields, status, `Retry-After`,
API Gateway's request id and the Idempotency-Key that was sent (retry later with the same key).
Bodies are never kept whole, so an error is always safe to log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

# API Gateway's own refusals (no `error` object in the body) name their kind in a header.
_GATEWAY_ERROR_TYPES = {
    "MissingAuthenticationTokenException": "missing_authentication",
    "IncompleteSignatureException": "invalid_signature",
    "InvalidSignatureException": "invalid_signature",
    "ExpiredTokenException": "expired_token",
    "AccessDeniedException": "forbidden",
    "UnauthorizedException": "forbidden",
    "TooManyRequestsException": "rate_limited",
    "ThrottlingException": "rate_limited",
    "RequestTooLarge": "payload_too_large",
    "IntegrationTimeout": "timeout",
}


class PaymentsApiError(Exception):
    """Base of everything the client raises.

    `code` is the API's stable error code (e.g. `not_found`, `idempotency_in_flight`),
    `http_status` the answer's status (None when no answer arrived), `fields` the per-field
    messages of a `validation_error`, `retry_after` the seconds the API asked to wait.
    """

    default_code = "api_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        fields: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.http_status = http_status
        self.fields: dict[str, str] = dict(fields or {})
        self.retry_after = retry_after
        self.request_id = request_id
        self.idempotency_key = idempotency_key

    def __str__(self) -> str:
        status = f"{self.http_status} " if self.http_status is not None else ""
        return f"{status}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class ConfigurationError(PaymentsApiError):
    """The client cannot sign: no AWS credentials or no region."""

    default_code = "configuration_error"


class ApiConnectionError(PaymentsApiError):
    """No answer arrived (connect failure, timeout, broken connection): the outcome is unknown,
    so repeat the request with the same Idempotency-Key."""

    default_code = "connection_error"


class UnexpectedResponse(PaymentsApiError):
    """An answer the client cannot read (not JSON, or not the documented shape)."""

    default_code = "unexpected_response"


class InvalidRequest(PaymentsApiError):
    """A 4xx answer: the request was refused; repeating it unchanged will not help."""

    default_code = "bad_request"


class ValidationFailed(InvalidRequest):
    """400 `validation_error` (also 413 and 415): `fields` names each bad field."""

    default_code = "validation_error"


class Forbidden(InvalidRequest):
    """401/403: unsigned, a bad or expired signature, or not allowed by IAM."""

    default_code = "forbidden"


class NotFound(InvalidRequest):
    """404 `not_found`: no such resource (or an id of the wrong shape)."""

    default_code = "not_found"


class Conflict(InvalidRequest):
    """409: the resource's state does not allow it (`invalid_state`, `card_removed`, ...), or
    another request holds it (`idempotency_in_flight`, `capture_in_progress`, ...)."""

    default_code = "conflict"


class Unprocessable(InvalidRequest):
    """422: `idempotency_key_reused` (the key was used with another body) or
    `card_account_mismatch`."""

    default_code = "unprocessable"


class RateLimited(InvalidRequest):
    """429: too many requests; wait `retry_after` seconds."""

    default_code = "rate_limited"


class ServerError(PaymentsApiError):
    """A 5xx answer."""

    default_code = "internal_error"


class ServiceUnavailable(ServerError):
    """503: `gateway_unavailable` (ePay unreachable, nothing charged), `invoice_space_exhausted`
    (with `retry_after`), `store_unavailable`..."""

    default_code = "service_unavailable"


class GatewayTimeout(ServerError):
    """504: API Gateway gave up waiting; the outcome is unknown (repeat with the same key)."""

    default_code = "timeout"


_BY_STATUS: dict[int, type[PaymentsApiError]] = {
    400: ValidationFailed,
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: ValidationFailed,
    415: ValidationFailed,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


def error_class(status: int) -> type[PaymentsApiError]:
    """The error class for an HTTP status (4xx and 5xx families as fallbacks)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 400 <= status < 500:
        return InvalidRequest
    if status >= 500:
        return ServerError
    return UnexpectedResponse


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_object(body: bytes) -> Mapping[str, Any]:
    try:
        decoded = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(decoded, dict):
        return {}
    error = decoded.get("error")
    if isinstance(error, dict):
        return error
    # API Gateway's default body: {"message": "..."}
    message = decoded.get("message")
    return {"message": message} if isinstance(message, str) else {}


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    idempotency_key: str | None = None,
) -> PaymentsApiError:
    """Build the typed error for an error answer (`headers` keyed in lower case)."""
    error = _error_object(body)
    code = error.get("code")
    if not isinstance(code, str) or not code:
        gateway_type = headers.get("x-amzn-errortype", "").split(":")[0]
        code = _GATEWAY_ERROR_TYPES.get(gateway_type) or f"http_{status}"
    message = error.get("message")
    raw_fields = error.get("fields")
    fields = {str(k): str(v) for k, v in raw_fields.items()} if isinstance(raw_fields, dict) else {}
    return error_class(status)(
        message if isinstance(message, str) and message else f"HTTP {status}",
        code=code,
        http_status=status,
        fields=fields,
        retry_after=parse_retry_after(headers.get("retry-after")),
        request_id=headers.get("x-amzn-requestid") or headers.get("x-amz-apigw-id"),
        idempotency_key=idempotency_key,
    )
