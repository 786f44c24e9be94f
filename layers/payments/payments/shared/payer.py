"""The optional payer details a charge carries to ePay, and where the customer's browser returns.

One value travels from the request through the charge (or subscription) to ePay and the store, so
a new optional field is added in one place. The API, ePay and the stored items spell the fields
the same way (`name`, `email`, `phone`, `backLink`, `failureBackLink`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PAYER_FIELDS = ("name", "email", "phone", "backLink", "failureBackLink")


@dataclass(frozen=True)
class Payer:
    """Who pays (name, e-mail, phone) and the merchant's return links; every part optional."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    back_link: str | None = None
    failure_back_link: str | None = None

    @classmethod
    def from_fields(cls, data: Mapping[str, Any]) -> Payer:
        """Read the camelCase fields of a validated body, an ePay body or a stored item."""
        values = [data.get(name) for name in PAYER_FIELDS]
        name, email, phone, back_link, failure_back_link = (
            None if value is None else str(value) for value in values
        )
        return cls(name, email, phone, back_link, failure_back_link)

    def fields(self) -> dict[str, str | None]:
        """The camelCase fields (None where absent)."""
        values = (self.name, self.email, self.phone, self.back_link, self.failure_back_link)
        return dict(zip(PAYER_FIELDS, values, strict=True))
