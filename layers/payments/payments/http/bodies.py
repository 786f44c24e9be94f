"""HTTP bodies: strict JSON request bodies in, JSON answers and the error body out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from payments.errors import PaymentsError, ValidationError
from payments.shared import jsonutil

MAX_BODY_BYTES = 16 * 1024
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


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
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"the request body is not valid JSON: {str(exc)[:120]}") from exc


def error_body(error: PaymentsError) -> dict[str, Any]:
    """The JSON body of an error answer: a stable code, a message, and per-field details."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, ValidationError) and error.fields:
        body["fields"] = error.fields
    return {"error": body}


def dumps(body: Mapping[str, Any]) -> str:
    """Serialise a response body with exact money."""
    return jsonutil.dumps(dict(body))
