"""The public refund request, validated into values."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from payments.errors import ValidationError
from payments.shared.fields import is_unicode_text
from payments.shared.money import money_str, validate_amount

MAX_REASON = 200
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500


@dataclass(frozen=True)
class RefundRequest:
    """A validated request to refund a charge (`amount` None: the rest of what was captured)."""

    amount: Decimal | None = None
    reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def fingerprint_fields(self, charge_id: str) -> dict[str, str]:
        """The request's fields as strings, for the idempotency fingerprint."""
        return {
            "chargeId": charge_id,
            "amount": money_str(self.amount) if self.amount is not None else "",
            "reason": self.reason or "",
            **{f"metadata.{k}": v for k, v in sorted(self.metadata.items())},
        }


def _reason_error(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or not is_unicode_text(value):
        return "must be non-empty text"
    return f"must be at most {MAX_REASON} characters" if len(value) > MAX_REASON else None


def _metadata_error(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return "must be an object of strings"
    if len(value) > MAX_METADATA_KEYS:
        return f"must have at most {MAX_METADATA_KEYS} keys"
    for key, item in value.items():
        if not (isinstance(key, str) and 0 < len(key) <= MAX_METADATA_KEY):
            return f"keys must be 1-{MAX_METADATA_KEY} characters"
        if not (isinstance(item, str) and len(item) <= MAX_METADATA_VALUE):
            return f"values must be strings of at most {MAX_METADATA_VALUE} characters"
        if not (is_unicode_text(key) and is_unicode_text(item)):
            return "must be valid text"
    return None


def parse_refund_request(body: Any) -> RefundRequest:
    """Validate the optional body of a refund, or raise ValidationError naming each field."""
    if body is None:
        return RefundRequest()
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = dict.fromkeys(sorted(set(body) - {"amount", "reason", "metadata"}), "unknown field")
    amount: Decimal | None = None
    if body.get("amount") is not None:
        checked = validate_amount(body["amount"])
        if isinstance(checked, str):
            errors["amount"] = checked
        else:
            amount = checked
    for name, rule in (("reason", _reason_error), ("metadata", _metadata_error)):
        problem = rule(body.get(name))
        if problem:
            errors[name] = problem
    if errors:
        raise ValidationError("the request is invalid", errors)
    return RefundRequest(amount, body.get("reason"), dict(body.get("metadata") or {}))
