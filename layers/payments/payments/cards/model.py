"""Saved cards and the sessions that save them (card setups): statuses, rules, what is stored.

A card becomes a saved card (an ePay `cardId`) only through ePay's own payment page (the widget,
epay-api.md section 9). A card setup is one such visit: a zero-amount verification (`verify`) or
a first payment that also saves the card (`pay`). Its invoice comes from the same invoice space
as charges; the card arrives in the postLink and is trusted only once ePay's status API says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from payments.shared.fields import matches


class SetupMode(StrEnum):
    """What the customer does on ePay's page: verify the card, or pay and save it."""

    VERIFY = "verify"
    PAY = "pay"


class SetupStatus(StrEnum):
    """Where a card setup is."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


class CardStatus(StrEnum):
    """Whether a saved card may be charged."""

    ACTIVE = "ACTIVE"
    REMOVED = "REMOVED"


class CardSource(StrEnum):
    """How the service came to know a card."""

    SETUP = "setup"  # saved through a card setup
    CHARGE = "charge"  # saved before the service existed, first seen on a successful charge
    EPAY = "epay"  # found in ePay's card list (?refresh=true)


# A zero-amount card verification, as ePay's page takes it (epay-api.md section 9).
VERIFY_AMOUNT = Decimal(0)
VERIFY_CURRENCY = "USD"
# How long the customer has to open the setup page; once it is open, ePay's page keeps it
# going (its token lives up to 2 h), so the setup ends by ePay's word or PENDING_FINAL_AGE.
SETUP_TTL = timedelta(hours=1)
SETUP_PENDING_FINAL_AGE = timedelta(hours=3)
# The reconciler's ladder for a setup whose page was opened: the first look after the customer
# had time to type a card, then backing off.
SETUP_CHECK_LADDER = (
    timedelta(minutes=10),
    timedelta(minutes=20),
    timedelta(minutes=30),
    timedelta(hours=1),
)
SETUP_DUE_SHARDS = 2
# A removal claimed less than this ago is still being made at ePay.
REMOVAL_IN_FLIGHT = timedelta(seconds=60)
SETUP_ID_RE = re.compile(r"\Acs_[0-9a-f]{32}\Z")


def is_setup_id(value: str) -> bool:
    """True for a string shaped like a setup id ("cs_" + 32 hex digits)."""
    return matches(SETUP_ID_RE, value)


@dataclass(frozen=True)
class SetupError:
    """Why a setup did not save a card."""

    code: str
    message: str


@dataclass(frozen=True)
class CardSetup:
    """One visit of a customer to ePay's page to save a card, as stored."""

    id: str
    account_id: str
    mode: SetupMode
    amount: Decimal
    currency: str
    invoice_id: str
    terminal_id: str
    status: SetupStatus
    back_link: str
    failure_back_link: str | None
    language: str
    description: str
    idempotency_key: str
    request_hash: str
    secret_hash_digest: str = field(repr=False)
    page_nonce: str = field(repr=False)
    page_token_digest: str = field(repr=False)
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    version: int = 1
    page_served_at: datetime | None = None
    next_check_at: datetime | None = None
    check_attempts: int = 0
    card_id: str | None = field(default=None, repr=False)
    card_mask: str | None = None
    charge_id: str | None = None
    transaction_id: str | None = None
    error: SetupError | None = None

    @property
    def open(self) -> bool:
        """Still waiting for the customer or for ePay's word."""
        return self.status is SetupStatus.PENDING


@dataclass(frozen=True)
class Card:
    """A saved card of an account, as stored."""

    id: str = field(repr=False)
    account_id: str
    status: CardStatus
    source: CardSource
    created_at: datetime
    updated_at: datetime
    mask: str | None = None
    card_type: str | None = None
    issuer: str | None = None
    setup_id: str | None = None
    removed_at: datetime | None = None
    payment_available: bool | None = None
    # False once ePay's card list (refresh) no longer shows it; None: never compared.
    listed_at_epay: bool | None = None
    removal_claimed_at: datetime | None = None
    version: int = 1


def removal_in_flight(card: Card, now: datetime) -> bool:
    """True while another request holds the claim to deactivate this card at ePay."""
    claimed = card.removal_claimed_at
    return claimed is not None and now - claimed < REMOVAL_IN_FLIGHT
