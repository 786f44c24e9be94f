"""Records the simulator keeps: the request journal, the ledger, tokens, 3DS steps, faults."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .cards import CardProfile

OPS = (
    "token",
    "auth",
    "status",
    "charge",
    "cancel",
    "refund",
    "cards",
    "deactivate",
    "confirm",
    "acs",
    "widget",
    "payform",
    "payform_pay",
    "payform_3ds",
    "other",
)
FAULTS = (
    "timeout_after_commit",
    "500_after_commit",
    "500_before_commit",
    "broken_body",
    "slow",
    "down",
    "in_progress",
    "nonfinal_after_commit",
    "nonfinal_before_commit",
    "error_as_200",
)
DEFAULT_FAULT_DELAY = {"timeout_after_commit": 30.0, "slow": 2.0}


@dataclass
class JournalEntry:
    """One HTTP request received by the simulator (control endpoints ``/_sim/*`` excluded).

    ``status`` is the HTTP status answered; ``0`` means no answer was sent (fault ``down`` or
    ``timeout_after_commit``); it is ``-1`` while the request is still being handled.
    ``headers`` keys are lower-cased. ``form`` is parsed for urlencoded and multipart bodies,
    ``json`` for JSON bodies (numbers with a fraction come back as ``Decimal``).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_body: bytes
    form: dict[str, str] | None
    json: Any | None
    op: str
    status: int = -1
    at: float = 0.0
    fault: str | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup."""
        return self.headers.get(name.lower(), default)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (the body as UTF-8 text with replacement, plus base64)."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "raw_body": self.raw_body.decode("utf-8", errors="replace"),
            "raw_body_b64": base64.b64encode(self.raw_body).decode("ascii"),
            "form": self.form,
            "json": _plain(self.json),
            "op": self.op,
            "status": self.status,
            "at": self.at,
            "fault": self.fault,
        }


@dataclass
class Refund:
    """One refund of a charged transaction: how much went back, under which ``externalID``
    (the merchant's refund id; "" when none was sent), and when."""

    amount: Decimal
    external_id: str = ""
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view; money as a decimal string, ``externalID`` in ePay's casing."""
        return {"amount": str(self.amount), "externalID": self.external_id, "at": self.at}


@dataclass
class LedgerEntry:
    """What really happened at "ePay" for one invoice on one terminal (``terminal``: its UUID).

    ``refunds`` lists every refund in order (``refunded_amount`` is their sum).
    """

    invoice_id: str
    transaction_id: str
    status_name: str
    amount: Decimal
    currency: str
    terminal: str
    card_id: str
    account_id: str
    reference: str = ""
    int_reference: str = ""
    approval_code: str = ""
    card_mask: str = ""
    auth_count: int = 1
    captured_amount: Decimal = Decimal(0)
    refunded_amount: Decimal = Decimal(0)
    reason_code: int = 0
    reason: str = ""
    history: list[str] = field(default_factory=list)
    invoice_id_alt: str = ""
    description: str = ""
    language: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""
    recurrent: bool = False
    created_at: float = 0.0
    secure: bool = False
    refunds: list[Refund] = field(default_factory=list)

    @property
    def refund_external_ids(self) -> list[str]:
        """The ``externalID`` of every refund that carried one, in order."""
        return [refund.external_id for refund in self.refunds if refund.external_id]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view; money as decimal strings."""
        return {
            "invoice_id": self.invoice_id,
            "transaction_id": self.transaction_id,
            "status_name": self.status_name,
            "amount": str(self.amount),
            "currency": self.currency,
            "terminal": self.terminal,
            "card_id": self.card_id,
            "account_id": self.account_id,
            "reference": self.reference,
            "int_reference": self.int_reference,
            "approval_code": self.approval_code,
            "card_mask": self.card_mask,
            "auth_count": self.auth_count,
            "captured_amount": str(self.captured_amount),
            "refunded_amount": str(self.refunded_amount),
            "reason_code": self.reason_code,
            "reason": self.reason,
            "history": list(self.history),
            "invoice_id_alt": self.invoice_id_alt,
            "description": self.description,
            "recurrent": self.recurrent,
            "created_at": self.created_at,
            "secure": self.secure,
            "refund_external_ids": self.refund_external_ids,
            "refunds": [refund.to_dict() for refund in self.refunds],
            "language": self.language,
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
        }


@dataclass
class TokenGrant:
    """An access token issued by ``/oauth2/token`` and what it is bound to."""

    access_token: str
    refresh_token: str
    scope: str
    client_id: str
    terminal: str | None
    expires_at: float
    invoice_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    post_link: str = ""
    failure_post_link: str = ""
    secret_hash: str = ""


@dataclass
class ThreeDSStep:
    """A 3-D Secure step waiting for the customer (the ACS page) and confirmPayment."""

    md: str
    pa_req: str
    invoice_id: str
    transaction_id: str
    access_token: str
    back_link: str
    failure_back_link: str


@dataclass
class NotifyLinks:
    """Where an invoice's postLink notifications go, and the ``secret_hash`` they echo."""

    post_link: str
    failure_post_link: str
    secret_hash: str


@dataclass
class SavedCard:
    """A card saved by a payment-page payment with ``cardSave``: ``GET /cards/{account_id}``
    lists it, ``/payments/cards/auth`` with ``account_id`` charges it (``profile`` decides how)."""

    card_id: str
    account_id: str
    client_id: str
    terminal: str
    mask: str
    card_type: str
    issuer: str
    payer_name: str
    transaction_id: str
    reference: str
    int_reference: str
    created_at: float
    profile: CardProfile

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "card_id": self.card_id,
            "account_id": self.account_id,
            "client_id": self.client_id,
            "terminal": self.terminal,
            "mask": self.mask,
            "card_type": self.card_type,
            "issuer": self.issuer,
            "payer_name": self.payer_name,
            "transaction_id": self.transaction_id,
            "reference": self.reference,
            "int_reference": self.int_reference,
            "created_at": self.created_at,
            "outcome": self.profile.outcome,
        }


@dataclass
class PayformSession:
    """One payment page shown for a payment object: its token grant and fields stay here (the
    browser holds only ``session_id``); ``stage`` is form, then 3ds, then done."""

    session_id: str
    grant: TokenGrant
    payment: dict[str, str]
    amount: Decimal
    verification: bool
    card_save: bool
    stage: str = "form"
    transaction_id: str = ""


@dataclass
class Fault:
    """A fault armed for the next ``remaining`` requests of ``op``."""

    op: str
    fault: str
    remaining: int
    delay: float


@dataclass
class PostLinkDelivery:
    """One postLink notification the simulator sent (or tried to send)."""

    url: str
    payload: dict[str, Any]
    status: int | None = None
    error: str | None = None
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "url": self.url,
            "payload": self.payload,
            "status": self.status,
            "error": self.error,
            "at": self.at,
        }


def _plain(value: Any) -> Any:
    """Decimals to strings, recursively, for JSON output of parsed request bodies."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
