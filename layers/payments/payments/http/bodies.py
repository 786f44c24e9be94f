"""HTTP bodies: strict JSON request bodies in, JSON answers and the error body out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from payments.errors import PaymentsError, ValidationError
from payments.shared import jsonutil
from payments.shared.fields import is_unicode_text

MAX_BODY_BYTES = 16 * 1024
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}
JSON_MEDIA_TYPE = "application/json"
UTF8_CHARSETS = frozenset({"utf-8", "utf8"})


class UnsupportedMediaTypeError(ValidationError):
    """A request body came with a Content-Type the route does not read."""

    code = "unsupported_media_type"
    http_status = 415


def require_json_content_type(content_type: str | None) -> None:
    """Accept `application/json` (any case, optionally `; charset=utf-8`); else raise 415.

    A JSON body sent as text/plain or a form is refused rather than guessed at: what the
    merchant's client declared is not what it sent, or not what it meant to send.
    """
    media_type, *params = (content_type or "").split(";")
    charsets = [
        value.strip().strip('"').lower()
        for name, sep, value in (param.partition("=") for param in params)
        if sep and name.strip().lower() == "charset"
    ]
    if media_type.strip().lower() != JSON_MEDIA_TYPE or not set(charsets) <= UTF8_CHARSETS:
        raise UnsupportedMediaTypeError(
            "the request body must be sent as application/json",
            {"Content-Type": "must be application/json (UTF-8)"},
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def parse_json_body(raw: str | bytes | None, *, required: bool = True) -> Any:
    """Decode a JSON request body strictly (size, UTF-8, no NaN, no duplicate keys)."""
    if raw is None or raw in ("", b""):
        if required:
            raise ValidationError("a JSON request body is required")
        return None
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(data) > MAX_BODY_BYTES:
        raise ValidationError(f"the request body must not exceed {MAX_BODY_BYTES} bytes")
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"the request body is not valid JSON: {str(exc)[:120]}") from exc
    _require_unicode_text(value)
    return value


def _holds_lone_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not is_unicode_text(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _require_unicode_text(value: Any) -> None:
    """Refuse strings that are no Unicode text: JSON can spell a lone UTF-16 surrogate
    (`"\\ud800"`), which nothing downstream can encode (ePay, DynamoDB, the logs)."""
    if not _holds_lone_surrogate(value):
        return
    message = "must be Unicode text (a lone surrogate such as \\ud800 is not)"
    fields: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if not is_unicode_text(key):
                fields["body"] = "a field name " + message
            elif _holds_lone_surrogate(item):
                fields[key[:64]] = message
    raise ValidationError("the request body holds a string that is not Unicode text", fields)


def error_body(error: PaymentsError) -> dict[str, Any]:
    """The JSON body of an error answer: a stable code, a message, and per-field details."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, ValidationError) and error.fields:
        body["fields"] = error.fields
    return {"error": body}


def dumps(body: Mapping[str, Any]) -> str:
    """Serialise a response body with exact money."""
    return jsonutil.dumps(dict(body))
