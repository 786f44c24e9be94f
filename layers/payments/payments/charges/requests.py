"""The public charge requests (create, capture), validated into values."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from payments.charges.model import CaptureMode
from payments.errors import ValidationError
from payments.shared.fields import FIELD_RULES, field_errors, one_of
from payments.shared.money import money_str, validate_amount
from payments.shared.payer import Payer


@dataclass(frozen=True)
class ChargeRequest:
    """A validated request to charge a saved card."""

    amount: Decimal
    currency: str
    card_id: str
    account_id: str
    description: str
    capture: CaptureMode
    recurrent: bool = True
    language: str = "rus"
    invoice_id: str | None = None
    invoice_id_alt: str | None = None
    payer: Payer = field(default_factory=Payer)

    def fingerprint_fields(self) -> dict[str, str]:
        """The request's fields as strings, for the idempotency fingerprint."""
        return {
            "amount": money_str(self.amount),
            "currency": self.currency,
            "cardId": self.card_id,
            "accountId": self.account_id,
            "description": self.description,
            "capture": self.capture.value,
            "recurrent": str(self.recurrent),
            "language": self.language,
            "invoiceId": self.invoice_id or "",
            "invoiceIdAlt": self.invoice_id_alt or "",
            **{name: value or "" for name, value in self.payer.fields().items()},
        }


# --- validation of the public request -------------------------------------------------------

_CHARGE_FIELDS = frozenset(
    {
        "amount",
        "currency",
        "cardId",
        "accountId",
        "description",
        "invoiceId",
        "invoiceIdAlt",
        "name",
        "email",
        "phone",
        "language",
        "backLink",
        "failureBackLink",
        "recurrent",
        "capture",
    }
)
CHARGE_RULES = {
    **FIELD_RULES,
    "capture": one_of(frozenset(m.value for m in CaptureMode), "must be auto or manual"),
}
_REQUIRED = ("amount", "currency", "cardId", "accountId", "description")


def parse_charge_request(body: Any, default_capture: CaptureMode) -> ChargeRequest:
    """Validate a decoded JSON body into a ChargeRequest or raise ValidationError per field."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = field_errors(body, _CHARGE_FIELDS, _REQUIRED, CHARGE_RULES)
    if errors:
        raise ValidationError("the request is invalid", errors)
    amount = validate_amount(body["amount"])
    assert isinstance(amount, Decimal)
    return ChargeRequest(
        amount=amount,
        currency=str(body["currency"]),
        card_id=str(body["cardId"]),
        account_id=str(body["accountId"]),
        description=str(body["description"]),
        capture=CaptureMode(body.get("capture") or default_capture.value),
        recurrent=body.get("recurrent") is not False,
        language=str(body.get("language") or "rus"),
        invoice_id=body.get("invoiceId"),
        invoice_id_alt=body.get("invoiceIdAlt"),
        payer=Payer.from_fields(body),
    )


def parse_capture_request(body: Any) -> Decimal | None:
    """Validate the optional body of a capture: `{"amount": <number>}` or nothing."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    unknown = sorted(set(body) - {"amount"})
    if unknown:
        raise ValidationError("the request is invalid", dict.fromkeys(unknown, "unknown field"))
    if body.get("amount") is None:
        return None
    amount = validate_amount(body["amount"])
    if isinstance(amount, str):
        raise ValidationError("the request is invalid", {"amount": amount})
    return amount
