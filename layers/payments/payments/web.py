"""The HTTP face of the service: request bodies in, charge resources and errors out."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol

from payments import jsonutil
from payments.errors import PaymentsError, ValidationError
from payments.gateway import Deadline
from payments.models import Charge, ChargeStatus, iso, mask_card_id

MAX_BODY_BYTES = 16 * 1024
DEADLINE_SAFETY_SECONDS = 1.0
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store"}


class HasRemainingTime(Protocol):
    """The part of the Lambda context the deadline needs."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda stops the invocation."""
        ...


def deadline_from(context: HasRemainingTime) -> Deadline:
    """Outbound work must end a little before the function's own timeout."""
    seconds = context.get_remaining_time_in_millis() / 1000 - DEADLINE_SAFETY_SECONDS
    return Deadline.after(max(0.0, seconds))


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


def next_action(
    charge: Charge, page_url: Callable[[Charge], str | None] | None
) -> dict[str, Any] | None:
    """What the customer must do next: the 3DS redirect of a REQUIRES_3DS charge, else None."""
    if charge.status is not ChargeStatus.REQUIRES_3DS:
        return None
    url = page_url(charge) if page_url is not None else None
    return {"type": "redirect", "url": url} if url else {"type": "three_d_secure"}


def error_view(charge: Charge) -> dict[str, str] | None:
    """Why a charge did not succeed, as the API and the events show it."""
    if charge.error is None:
        return None
    return {
        "code": charge.error.code,
        "message": charge.error.message,
        "category": charge.error.category,
    }


def charge_resource(
    charge: Charge, page_url: Callable[[Charge], str | None] | None = None
) -> dict[str, Any]:
    """The public representation of a charge (card id masked, no secrets).

    A REQUIRES_3DS charge's `nextAction` is `{"type": "redirect", "url": ...}` with the URL of
    its 3-D Secure page (`page_url`, payments.threeds.PageLinks.page_url); a charge stored
    without a page token keeps the bare `{"type": "three_d_secure"}`.
    """
    return {
        "id": charge.id,
        "invoiceId": charge.invoice_id,
        "status": charge.status.value,
        "amount": charge.amount,
        "capturedAmount": charge.captured_amount,
        "currency": charge.currency,
        "accountId": charge.account_id,
        "cardId": mask_card_id(charge.card_id),
        "description": charge.description,
        "capture": charge.capture.value,
        "recurrent": charge.recurrent,
        "createdAt": iso(charge.created_at),
        "updatedAt": iso(charge.updated_at),
        "epay": {
            "transactionId": charge.epay.transaction_id,
            "reference": charge.epay.reference,
            "approvalCode": charge.epay.approval_code,
            "cardMask": charge.epay.card_mask,
        },
        "nextAction": next_action(charge, page_url),
        "error": error_view(charge),
    }


def error_body(error: PaymentsError) -> dict[str, Any]:
    """The JSON body of an error answer: a stable code, a message, and per-field details."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if isinstance(error, ValidationError) and error.fields:
        body["fields"] = error.fields
    return {"error": body}


def dumps(body: Mapping[str, Any]) -> str:
    """Serialise a response body with exact money."""
    return jsonutil.dumps(dict(body))
