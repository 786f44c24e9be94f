"""The payment gateway port: what charges ask of ePay, and its answers in our types.

ePay's status names are parsed once, by the adapter (payments.epay), into `GatewayStatus`; what
each one means for a charge is decided once, in payments.charges.settlement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from payments.charges.declines import DeclineCategory
from payments.shared.payer import Payer

if TYPE_CHECKING:
    from payments.charges.terminals import Terminal
    from payments.shared.deadline import Deadline


class GatewayStatus(StrEnum):
    """A transaction's status at ePay (`status` of an auth answer, `statusName` of a status one)."""

    NEW = "NEW"
    THREE_DS = "3D"
    FINGERPRINT = "FINGERPRINT"
    AUTH = "AUTH"
    CHARGE = "CHARGE"
    CANCEL = "CANCEL"
    CANCEL_OLD = "CANCEL_OLD"
    REFUND = "REFUND"
    REJECT = "REJECT"
    FAILED = "FAILED"
    VERIFIED = "VERIFIED"

    @classmethod
    def parse(cls, value: object) -> GatewayStatus | None:
        """The status named by `value` (any case), or None for a name ePay does not document."""
        try:
            return cls(str(value or "").strip().upper())
        except ValueError:
            return None


@dataclass(frozen=True)
class Token:
    """An ePay access token; the value never appears in repr()."""

    access_token: str = field(repr=False)
    expires_at: datetime
    # ePay's whole token answer (access_token, expires_in, refresh_token, scope, token_type):
    # its payment page takes it as `auth` (epay-api.md section 9).
    raw: Mapping[str, object] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class InvoiceTokenRequest:
    """The invoice fields a per-operation token is bound to (epay-api.md section 1)."""

    invoice_id: str
    amount: Decimal
    currency: str
    post_link: str
    failure_post_link: str
    secret_hash: str = field(repr=False)
    terminal_id: str = ""  # empty: the credentials' first terminal


@dataclass(frozen=True)
class AuthRequest:
    """The body of POST /payments/cards/auth (epay-api.md section 2)."""

    invoice_id: str
    amount: Decimal
    currency: str
    card_id: str = field(repr=False)
    account_id: str
    description: str
    language: str
    recurrent: bool
    post_link: str
    failure_post_link: str
    invoice_id_alt: str | None = None
    payer: Payer = field(default_factory=Payer)
    terminal_id: str = ""  # empty: the credentials' first terminal


@dataclass(frozen=True)
class Secure3D:
    """ePay's demand for 3-D Secure: where to send the customer and what to post there."""

    pa_req: str = field(repr=False)
    md: str = field(repr=False)
    action: str
    term_url: str | None = None


@dataclass(frozen=True)
class AuthResult:
    """A 200 answer of the auth endpoint: AUTH (held), CHARGE (taken) or 3D."""

    status: GatewayStatus
    transaction_id: str | None
    invoice_id: str | None
    reference: str | None = None
    approval_code: str | None = None
    card_mask: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    secure3d: Secure3D | None = None


@dataclass(frozen=True)
class ConfirmResult:
    """What ePay's 3-D Secure confirm said: a `reference` (RRN) on success, an `error_code` on
    failure, neither when the answer was unclear. Informational: the status API decides."""

    reference: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class TransactionAmounts:
    """A transaction's amounts as the status API gives them, read together, in one way.

    ePay's own status example shows a 22.22 payment as `orgAmount` 22.22, `amount` 12.22 and
    `payoutAmount` 10. So: `original` (orgAmount) is what the transaction was made for,
    `current` (amount) what it stands at now, `returned` (payoutAmount) what went back to the
    card (a refund, a released hold): original = current + returned. An answer without
    orgAmount (older shape) has `amount` as both. 0 is an amount, never "missing". `bonus`
    (amountBonus, paid with the bank's loyalty points) is kept for the record only.
    """

    current: Decimal | None = None
    original: Decimal | None = None
    returned: Decimal | None = None
    bonus: Decimal | None = None

    @property
    def made_for(self) -> Decimal | None:
        """What the transaction was made for."""
        return self.original if self.original is not None else self.current

    @property
    def standing(self) -> Decimal | None:
        """What the transaction stands at now."""
        return self.current if self.current is not None else self.original

    def fits(self, made_for: Decimal, standing: Decimal | None = None) -> bool:
        """Whether these amounts tell of a transaction made for `made_for` that now stands at
        `standing` (None: whatever it stands at), nothing else returned, adding up."""
        if self.made_for not in (None, made_for):
            return False
        if not self.adds_up():
            return False
        if standing is None:
            return True
        return self.standing in (None, standing) and self.returned in (None, made_for - standing)

    def adds_up(self) -> bool:
        """original = current + returned, when ePay gave all three."""
        current, original, returned = self.current, self.original, self.returned
        if current is None or original is None or returned is None:
            return True
        return original == current + returned

    def __str__(self) -> str:
        parts = [f"amount {self.current}", f"orgAmount {self.original}"]
        parts += [f"payoutAmount {self.returned}", f"amountBonus {self.bonus}"]
        return ", ".join(p for p in parts if not p.endswith(" None")) or "no amounts"


@dataclass(frozen=True)
class TransactionStatus:
    """The transaction part of a status answer (epay-api.md section 4), as the adapter read it:
    the decline category of its reason code and both names of its terminal included."""

    transaction_id: str | None
    invoice_id: str | None
    status_name: str  # as ePay wrote it (upper-cased), for history and logs
    amount: Decimal | None
    currency: str | None
    reference: str | None
    approval_code: str | None
    card_mask: str | None
    reason: str | None
    reason_code: int | None
    original_amount: Decimal | None = None  # orgAmount
    returned_amount: Decimal | None = None  # payoutAmount
    bonus_amount: Decimal | None = None  # amountBonus
    terminal_id: str | None = None  # terminalID: the terminal's UUID (the credentials' name)
    terminal_code: str | None = None  # terminal: its 8-digit code (what postLinks may carry)
    decline_category: DeclineCategory = DeclineCategory.OTHER
    # cardID: the card the payment used, or the one it saved (a card setup, section 9).
    card_id: str | None = field(default=None, repr=False)

    @property
    def status(self) -> GatewayStatus | None:
        """The status in our enum; None for a name ePay does not document."""
        return GatewayStatus.parse(self.status_name)

    @property
    def amounts(self) -> TransactionAmounts:
        """The amounts, read together (see TransactionAmounts)."""
        return TransactionAmounts(
            self.amount, self.original_amount, self.returned_amount, self.bonus_amount
        )


@dataclass(frozen=True)
class StatusResult:
    """An answer of the status API; `transaction` is set when resultCode is 100."""

    result_code: str
    message: str
    transaction: TransactionStatus | None

    @property
    def not_found(self) -> bool:
        """ePay has no transaction for the invoice (resultCode 102)."""
        return self.result_code == "102"


class PaymentGateway(Protocol):
    """The ePay operations the charge use cases call."""

    def invoice_token(self, request: InvoiceTokenRequest, deadline: Deadline) -> Token:
        """A token bound to one invoice, amount and currency."""
        ...

    def authorize(self, token: Token, request: AuthRequest, deadline: Deadline) -> AuthResult:
        """Charge a saved card; never retried."""
        ...

    def status(self, invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        """Ask ePay what happened to an invoice of a terminal (empty: the first)."""
        ...

    def capture(
        self, transaction_id: str, terminal_id: str, amount: Decimal | None, deadline: Deadline
    ) -> None:
        """Charge (capture) a held AUTH of a terminal, wholly or partly."""
        ...

    def cancel(self, transaction_id: str, terminal_id: str, deadline: Deadline) -> None:
        """Release (void) a held AUTH of a terminal."""
        ...

    def confirm_3ds(
        self, access_token: str, pa_res: str, md: str, deadline: Deadline
    ) -> ConfirmResult:
        """Forward the ACS's PaRes/MD to ePay's confirm endpoint with the charge's token; never
        retried, redirects never followed."""
        ...

    def terminals(self) -> tuple[Terminal, ...]:
        """The merchant's terminals, from the credentials (the first is the default)."""
        ...
