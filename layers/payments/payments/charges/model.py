"""The charge: its statuses and the state machine between them, and what is stored with it."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from payments.shared.fields import matches
from payments.shared.payer import Payer

_CHARGE_ID_PREFIX = re.compile(r"\Ach_[0-9a-f]{32}")


class ChargeStatus(StrEnum):
    """Where a charge is in its life."""

    PROCESSING = "PROCESSING"
    REQUIRES_3DS = "REQUIRES_3DS"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    CANCELLED = "CANCELLED"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"
    NEEDS_REVIEW = "NEEDS_REVIEW"


S = ChargeStatus
_SETTLED_BY_GATEWAY = {S.AUTHORIZED, S.CAPTURED, S.DECLINED, S.EXPIRED}
TRANSITIONS: dict[ChargeStatus, frozenset[ChargeStatus]] = {
    S.PROCESSING: frozenset(
        {S.REQUIRES_3DS, S.UNKNOWN, S.FAILED, S.CANCELLED, S.NEEDS_REVIEW, *_SETTLED_BY_GATEWAY}
    ),
    S.REQUIRES_3DS: frozenset({S.UNKNOWN, S.CANCELLED, S.NEEDS_REVIEW, *_SETTLED_BY_GATEWAY}),
    S.UNKNOWN: frozenset(
        {S.REQUIRES_3DS, S.FAILED, S.CANCELLED, S.NEEDS_REVIEW, *_SETTLED_BY_GATEWAY}
    ),
    S.AUTHORIZED: frozenset({S.CAPTURED, S.CANCELLED, S.EXPIRED, S.REFUNDED, S.NEEDS_REVIEW}),
    S.CAPTURED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.NEEDS_REVIEW}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.NEEDS_REVIEW}),
    S.NEEDS_REVIEW: frozenset(
        {S.AUTHORIZED, S.CAPTURED, S.CANCELLED, S.REFUNDED, S.DECLINED, S.EXPIRED, S.FAILED}
    ),
    S.REFUNDED: frozenset(),
    # A charge cancelled during 3-D Secure that ePay charged all the same needs a person.
    S.CANCELLED: frozenset({S.NEEDS_REVIEW}),
    S.DECLINED: frozenset({S.NEEDS_REVIEW}),
    S.EXPIRED: frozenset({S.NEEDS_REVIEW}),
    S.FAILED: frozenset({S.NEEDS_REVIEW}),
}
# While a charge is in one of these, its 3-D Secure step may still need PaReq, MD and the token.
THREE_DS_OPEN = frozenset({S.PROCESSING, S.REQUIRES_3DS, S.UNKNOWN})
FINAL_STATUSES = frozenset(
    {S.CAPTURED, S.PARTIALLY_REFUNDED, S.REFUNDED, S.CANCELLED, S.DECLINED, S.EXPIRED, S.FAILED}
)
# The reconciler's backoff ladder: how long after each unsuccessful check the next one is due.
CHECK_LADDER = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=24),
)
# A PROCESSING charge older than this lost its function between the write and ePay's answer.
PROCESSING_SAFE_AGE = timedelta(minutes=2)
# Longer than any ePay token lives (7200 s documented): after this a pending step cannot finish.
PENDING_FINAL_AGE = timedelta(hours=3)
DUE_SHARDS = 8


# A capture claimed less than this ago is still being made (longer than any function's timeout).
CAPTURE_IN_FLIGHT = timedelta(seconds=60)


def capture_in_flight(charge: Charge, now: datetime) -> bool:
    """True while another request holds the claim to capture this charge at ePay."""
    claimed = charge.capture_claimed_at
    return claimed is not None and now - claimed < CAPTURE_IN_FLIGHT


def can_transition(current: ChargeStatus, target: ChargeStatus) -> bool:
    """True when the state machine allows moving from `current` to `target`."""
    return target in TRANSITIONS[current]


class CaptureMode(StrEnum):
    """Whether an ePay AUTH (money held) is charged at once or left for an explicit capture."""

    AUTO = "auto"
    MANUAL = "manual"


@dataclass(frozen=True)
class EpayRef:
    """What ePay told us about the transaction behind a charge."""

    transaction_id: str | None = None
    reference: str | None = None
    approval_code: str | None = None
    card_mask: str | None = None


@dataclass(frozen=True)
class ChargeError:
    """Why a charge did not succeed."""

    code: str
    message: str
    category: str


@dataclass(frozen=True)
class ThreeDSData:
    """What the 3-D Secure step needs: ePay's secure3D object and the charge's token."""

    pa_req: str = field(repr=False)
    md: str = field(repr=False)
    action: str
    access_token: str = field(repr=False)
    token_expires_at: datetime
    term_url: str | None = None
    # The customer's page token (charges.page_tokens): a per-charge nonce to recompute it for
    # display, and the SHA-256 of the token; the token itself is never stored.
    page_nonce: str | None = field(default=None, repr=False)
    page_token_digest: str | None = field(default=None, repr=False)
    # When the redirect page was served (its token is then used up) and when the ACS's answer
    # reached TermUrl (the confirm is then ours to make, once).
    page_served_at: datetime | None = None
    returned_at: datetime | None = None
    # Once the step is over, PaReq, the token and the nonce are gone and MD is kept only as its
    # SHA-256 (a late ACS return is still recognised, never replayable).
    md_is_digest: bool = False

    def md_matches(self, md: str) -> bool:
        """Whether `md` is the MD ePay gave for this charge (constant time)."""
        offered = _sha256(md) if self.md_is_digest else md
        return hmac.compare_digest(offered.encode("utf-8"), self.md.encode("utf-8"))

    def scrubbed(self) -> ThreeDSData:
        """This step's data without PaReq, MD, the ePay access token or the page nonce."""
        if self.md_is_digest:
            return self
        return replace(
            self,
            pa_req="",
            md=_sha256(self.md),
            md_is_digest=True,
            access_token="",  # nosec B106 # erases the token (an empty string), not a credential
            page_nonce=None,
        )


@dataclass(frozen=True)
class Charge:
    """One attempt to charge a saved card, as stored.

    Two write-once facts live on the charge's INVOICE item, not its charge item (issue 16: a
    status write of an item under 1 KB costs 1 WRU, decisions 2026-12-06), so a charge read
    from the store does not know them and says so with None rather than an empty value:
    - `payer` (name, e-mail, phone, return links): None when read back; only the 3-D Secure
      return needs it and asks the store (ChargeStore.payer: this charge's own value when it
      has one, as a charge written before issue 16 does, else one read of the invoice item).
    - `idempotency_key`: None when read back, except a renewal's key (the charge item keeps it:
      its events name the subscription) and a charge written before issue 16. A new charge
      always has both, from its request; they are written once, with its invoice.
    """

    id: str
    invoice_id: str
    status: ChargeStatus
    amount: Decimal
    currency: str
    account_id: str
    card_id: str = field(repr=False)
    description: str
    capture: CaptureMode
    recurrent: bool
    language: str
    idempotency_key: str | None
    request_hash: str
    secret_hash_digest: str
    created_at: datetime
    updated_at: datetime
    version: int = 1
    invoice_id_alt: str | None = None
    payer: Payer | None = field(default_factory=Payer)
    captured_amount: Decimal | None = None
    epay: EpayRef = field(default_factory=EpayRef)
    error: ChargeError | None = None
    three_ds: ThreeDSData | None = None
    capture_pending: bool = False
    # When a capture was claimed (written before ePay's charge endpoint is called); None: no claim.
    capture_claimed_at: datetime | None = None
    next_check_at: datetime | None = None
    check_attempts: int = 0
    # The ePay terminal the charge was made on (empty: stored before charges recorded it, which
    # means the credentials' first terminal; see charges.terminals.resolve).
    terminal_id: str = ""
    # Refunds (payments.refunds): what went back to the card, and what refunds sent to ePay
    # without a known outcome hold (reserved before ePay is called, released if they fail).
    refunded_amount: Decimal = Decimal(0)
    refund_reserved: Decimal = Decimal(0)
    # A void (cancel) was sent and its answer lost: the reconciler asks ePay and cancels again
    # if the money is still held (a cancel moves no money, so it may be sent twice).
    void_pending: bool = False

    @property
    def refundable(self) -> Decimal:
        """What may still be refunded: captured, less refunded and reserved."""
        return (self.captured_amount or Decimal(0)) - self.refunded_amount - self.refund_reserved


@dataclass(frozen=True)
class HistoryEntry:
    """One transition of a charge, appended and never changed."""

    from_status: ChargeStatus | None
    to_status: ChargeStatus
    at: datetime
    source: Source
    detail: str = ""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def secret_hash_digest(secret_hash: str) -> str:
    """The digest we keep of a charge's secret_hash (the value itself is never stored)."""
    return hashlib.sha256(secret_hash.encode()).hexdigest()


def charge_secret_hash(charge_id: str, secret: str) -> str:
    """The secret_hash sent with a charge's token: its id, then the secret. ePay echoes it in the
    postLink, so the intake reads the charge by id (one read) rather than through its invoice;
    the id is a hint only: the whole value is still checked against the kept digest."""
    return f"{charge_id}{secret}"


def charge_id_for_key(idempotency_key: str) -> str:
    """The id of the charge an Idempotency-Key creates: derived from the key, so the charge's own
    conditional put is the key's guard (no item of its own; decisions 2026-12-06)."""
    digest = hashlib.sha256(b"charge\x00" + idempotency_key.encode()).hexdigest()
    return f"ch_{digest[:32]}"


def charge_id_hint(secret_hash: str | None) -> str | None:
    """The charge id a secret_hash begins with (`charge_secret_hash`), or None."""
    found = _CHARGE_ID_PREFIX.match(secret_hash or "")
    return found.group(0) if found else None


class Source(StrEnum):
    """Who moved a charge: kept in its history and reported in telemetry."""

    API = "api"
    THREEDS_PAGE = "3ds-page"
    THREEDS_RETURN = "3ds-return"
    POSTLINK = "postlink"
    RECONCILER = "reconciler"
    OPERATOR = "operator"  # a person, through the operator API (POST /charges/{id}/resolve)


# The shape of the ids `charge_id_for_key` makes ("ch_" + 32 hex digits).
CHARGE_ID_RE = re.compile(r"\Ach_[0-9a-f]{32}\Z")


def is_charge_id(value: str) -> bool:
    """True for a string shaped like a charge id; anything else is no charge (a 404, unread)."""
    return matches(CHARGE_ID_RE, value)
