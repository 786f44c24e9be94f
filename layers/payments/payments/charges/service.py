"""Charge use cases: create a charge (once per idempotency key), read it, capture it.

The service sees neither API Gateway events, nor boto3, nor urllib3: only the model and the
PaymentGateway, ChargeStore and Telemetry ports. Settling from ePay's answers is
payments.charges.settlement; every write goes through payments.charges.transitions.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from payments.charges.declines import DeclineCategory
from payments.charges.invoices import InvoiceAllocator
from payments.charges.links import PublicLinks
from payments.charges.model import (
    PROCESSING_SAFE_AGE,
    Charge,
    ChargeError,
    EpayRef,
    HistoryEntry,
    S,
    Source,
    ThreeDSData,
    capture_in_flight,
    charge_id_for_key,
    charge_secret_hash,
    secret_hash_digest,
)
from payments.charges.payment_gateway import (
    AuthRequest,
    AuthResult,
    GatewayStatus,
    InvoiceTokenRequest,
    PaymentGateway,
    Token,
)
from payments.charges.ports import CardRules, CardSnapshot, ChargeStore, Telemetry
from payments.charges.requests import ChargeRequest
from payments.charges.settlement import SETTLES_AS, ChargeSettler
from payments.charges.terminals import charge_purpose, route
from payments.charges.transitions import Change, ChargeTransitions, Step
from payments.errors import (
    CaptureInProgressError,
    ConfigurationError,
    ConflictError,
    DuplicateKeyError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
    IdempotencyInFlightError,
    InvalidTransitionError,
    InvoiceSpaceExhaustedError,
    NotFoundError,
    PaymentsError,
    StaleStateError,
    ValidationError,
)
from payments.shared.clock import utc_now
from payments.shared.deadline import Deadline
from payments.shared.idempotency import IdempotencyRecord, create_once, fingerprint
from payments.shared.payer import Payer


@dataclass(frozen=True)
class CreateResult:
    """The charge a create request produced, and whether it was a replay."""

    charge: Charge
    replayed: bool


class ChargeService:
    """Charges a saved card once; reads and captures charges."""

    def __init__(
        self,
        *,
        store: ChargeStore,
        gateway: PaymentGateway,
        settler: ChargeSettler,
        transitions: ChargeTransitions,
        telemetry: Telemetry,
        links: PublicLinks,
        allocator: InvoiceAllocator,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
        page_token: Callable[[str], tuple[str, str]] | None = None,
        cards: CardRules | None = None,
    ) -> None:
        self._cards = cards
        self._store = store
        self._gateway = gateway
        self._settler = settler
        self._tx = transitions
        self._telemetry = telemetry
        self._links = links
        self._allocator = allocator
        self._clock = clock
        self._rand = rand
        self._new_secret = new_secret
        # charge id -> (nonce, digest) of the customer's 3DS page token (charges.page_tokens)
        self._page_token = page_token

    # --- create ----------------------------------------------------------------------------

    def create_charge(
        self, request: ChargeRequest, idempotency_key: str, deadline: Deadline
    ) -> CreateResult:
        """Charge a saved card once per idempotency key; the record is written before ePay."""
        request_hash = fingerprint(request.fingerprint_fields())
        charge_id = charge_id_for_key(idempotency_key)
        secret_hash = charge_secret_hash(charge_id, self._new_secret())
        card: CardSnapshot | None = None

        def lookup(key: str) -> IdempotencyRecord | None:
            # The card is read with the key (one request); a replay leaves it unused.
            nonlocal card
            if self._cards is None:
                return self._store.get_idempotency(key, charge_id)
            record, card = self._store.get_idempotency_and_card(key, charge_id, request.card_id)
            return record

        def create() -> Charge | None:
            if self._cards is not None:
                # A removed card, or another account's, is refused before any write or ePay call.
                self._cards.check_snapshot(request.account_id, card)
            return self._insert(request, idempotency_key, request_hash, secret_hash, charge_id)

        once = create_once(
            idempotency_key, request_hash, lookup=lookup, create=create, replay=self._replay
        )
        charge = once.value
        if once.replayed:
            return CreateResult(charge, replayed=True)
        self._telemetry.bind_charge(charge)
        self._telemetry.transitioned(charge, None, Source.API)
        authorized = self._authorize(charge, request.payer, secret_hash, deadline)
        return CreateResult(authorized, replayed=False)

    def _insert(
        self,
        request: ChargeRequest,
        key: str,
        fingerprint: str,
        secret_hash: str,
        charge_id: str,
    ) -> Charge | None:
        """Write the new charge on a terminal of its purpose (charges.terminals.route), with an
        invoice id of that terminal's space; None when the idempotency key was taken meanwhile.

        A terminal whose space is full, or which still holds a merchant-supplied id's last six
        digits, is passed over for the next terminal of the same purpose.
        """
        purpose = charge_purpose(request.recurrent)
        order = route(self._gateway.terminals(), purpose, self._rand)
        if not order:
            raise ConfigurationError(f"no ePay terminal serves {purpose.value} charges")
        problem: PaymentsError | None = None
        for terminal in order:

            def write(invoice_id: str, terminal_id: str = terminal.id) -> Charge:
                return self._write(
                    request, key, fingerprint, secret_hash, charge_id, terminal_id, invoice_id
                )

            try:
                if request.invoice_id is not None:
                    return write(request.invoice_id)
                return self._allocator.allocate(terminal.id, write)
            except InvoiceSpaceExhaustedError as exc:
                problem = _sooner(problem, exc)
            except DuplicateKeyError as exc:
                if exc.which in ("charge", "idempotency"):
                    return None  # the key's charge was written meanwhile
                if exc.which != "invoice_suffix":
                    raise ConflictError("invoiceId is already used") from exc
                problem = ConflictError(
                    "the last 6 digits of invoiceId are still reserved on every terminal"
                )
        assert problem is not None
        raise problem

    def _write(
        self,
        request: ChargeRequest,
        key: str,
        fingerprint: str,
        secret_hash: str,
        charge_id: str,
        terminal_id: str,
        invoice_id: str,
    ) -> Charge:
        # One id for every attempt (terminals, invoice slots): a refused create writes nothing.
        now = self._clock()
        charge = Charge(
            id=charge_id,
            invoice_id=invoice_id,
            status=S.PROCESSING,
            amount=request.amount,
            currency=request.currency,
            account_id=request.account_id,
            card_id=request.card_id,
            description=request.description,
            capture=request.capture,
            recurrent=request.recurrent,
            language=request.language,
            idempotency_key=key,
            request_hash=fingerprint,
            secret_hash_digest=secret_hash_digest(secret_hash),
            created_at=now,
            updated_at=now,
            next_check_at=now + PROCESSING_SAFE_AGE,
            invoice_id_alt=request.invoice_id_alt,
            payer=request.payer,
            terminal_id=terminal_id,
        )
        self._store.create(charge, HistoryEntry(None, S.PROCESSING, now, Source.API))
        return charge

    def _replay(self, record: IdempotencyRecord) -> Charge:
        """The charge an earlier request with the key created, once it is past PROCESSING."""
        charge = self._store.get(record.resource_id)
        if charge is None or charge.status is S.PROCESSING:
            raise IdempotencyInFlightError(
                "a request with this Idempotency-Key is still being processed"
            )
        if charge.status is S.FAILED and charge.error is not None:
            raise GatewayUnavailableError(charge.error.message, operation="token")
        return charge

    def _authorize(
        self, charge: Charge, payer: Payer, secret_hash: str, deadline: Deadline
    ) -> Charge:
        try:
            token = self._gateway.invoice_token(
                InvoiceTokenRequest(
                    invoice_id=charge.invoice_id,
                    amount=charge.amount,
                    currency=charge.currency,
                    post_link=self._links.post_link,
                    failure_post_link=self._links.failure_post_link,
                    secret_hash=secret_hash,
                    terminal_id=charge.terminal_id,
                ),
                deadline,
            )
        except GatewayError as exc:
            # No token, so no auth was sent: nothing can exist at ePay for this invoice.
            self._telemetry.gateway_failure(charge, exc)
            self._fail(charge, "token", exc)
            raise GatewayUnavailableError(
                "ePay is unavailable, the card was not charged", operation="token"
            ) from exc

        try:
            result = self._gateway.authorize(token, self._auth_request(charge, payer), deadline)
        except GatewayRejectedError as exc:
            # Only a code ePay documents as final is a decline; others arrive as unknown outcomes.
            error = ChargeError(
                code=str(exc.gateway_code if exc.gateway_code is not None else "rejected"),
                message=exc.message,
                category=exc.decline_category or DeclineCategory.OTHER.value,
            )
            step = Step(S.DECLINED, f"ePay code {exc.gateway_code}")
            return self._tx.move(charge, Change(Source.API, (step,), error=error))
        except GatewayUnknownOutcomeError as exc:
            self._telemetry.gateway_failure(charge, exc)
            return self._tx.move(charge, Change(Source.API, (Step(S.UNKNOWN, exc.message),)))
        except GatewayUnavailableError as exc:
            self._telemetry.gateway_failure(charge, exc)
            self._fail(charge, "auth", exc)
            raise GatewayUnavailableError(
                "ePay is unavailable, the card was not charged", operation="auth"
            ) from exc
        return self._answered(charge, token, result, deadline)

    def _answered(
        self, charge: Charge, token: Token, result: AuthResult, deadline: Deadline
    ) -> Charge:
        """Apply a 200 answer of the auth endpoint: 3-D Secure demanded, money held or taken."""
        epay = EpayRef(
            transaction_id=result.transaction_id,
            reference=result.reference,
            approval_code=result.approval_code,
            card_mask=result.card_mask,
        )
        if result.status is GatewayStatus.THREE_DS:
            assert result.secure3d is not None
            nonce, digest = self._page_token(charge.id) if self._page_token else (None, None)
            three_ds = ThreeDSData(
                pa_req=result.secure3d.pa_req,
                md=result.secure3d.md,
                action=result.secure3d.action,
                access_token=token.access_token,
                token_expires_at=token.expires_at,
                term_url=result.secure3d.term_url,
                page_nonce=nonce,
                page_token_digest=digest,
            )
            return self._tx.move(
                charge,
                Change(Source.API, (Step(S.REQUIRES_3DS),), epay=epay, three_ds=three_ds),
            )
        if SETTLES_AS[result.status] is S.CAPTURED:
            return self._tx.move(
                charge,
                Change(
                    Source.API,
                    (Step(S.CAPTURED, "single-stage"),),
                    epay=epay,
                    captured=charge.amount,
                ),
            )
        return self._settler.authorized(charge, epay, Source.API, "", deadline)

    def _auth_request(self, charge: Charge, payer: Payer) -> AuthRequest:
        return AuthRequest(
            invoice_id=charge.invoice_id,
            amount=charge.amount,
            currency=charge.currency,
            card_id=charge.card_id,
            account_id=charge.account_id,
            description=charge.description,
            language=charge.language,
            recurrent=charge.recurrent,
            post_link=self._links.post_link,
            failure_post_link=self._links.failure_post_link,
            invoice_id_alt=charge.invoice_id_alt,
            payer=payer,  # the request's (a stored charge does not carry it)
            terminal_id=charge.terminal_id,
        )

    def _fail(self, charge: Charge, step: str, exc: GatewayError) -> None:
        error = ChargeError(
            code=GatewayUnavailableError.code,
            message="ePay is unavailable, the card was not charged",
            category="other",
        )
        failed = Step(S.FAILED, f"{step}: {type(exc).__name__}")
        self._tx.move(charge, Change(Source.API, (failed,), error=error))

    # --- read and capture -----------------------------------------------------------------

    def get_charge(self, charge_id: str) -> Charge:
        """The stored charge, or NotFoundError."""
        charge = self._store.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        return charge

    def capture_charge(self, charge_id: str, amount: Decimal | None, deadline: Deadline) -> Charge:
        """Charge a held AUTH wholly or partly, calling ePay once however many callers race.

        The capture is claimed by a conditional write first: the winner calls ePay; a caller that
        loses the claim gets the charge once captured, or a 409 while the capture is in flight.
        Capturing a captured charge again (same amount) answers it as it is.
        """
        charge = self.get_charge(charge_id)
        self._telemetry.bind_charge(charge)
        if _already_captured(charge, amount):
            return charge
        self._check_capturable(charge, amount)
        now = self._tx.now()
        if capture_in_flight(charge, now):
            raise CaptureInProgressError("a capture of this charge is in progress")
        try:
            claimed = self._tx.apply(charge, Change(Source.API, capture_claimed_at=now))
        except StaleStateError as exc:
            latest = self._tx.latest(charge)
            if _already_captured(latest, amount):
                return latest
            raise CaptureInProgressError("a capture of this charge is in progress") from exc
        assert claimed.epay.transaction_id is not None
        try:
            self._gateway.capture(
                claimed.epay.transaction_id, claimed.terminal_id, amount, deadline
            )
        except GatewayUnknownOutcomeError:
            # Taken or not: the reconciler asks the status API (capture_pending schedules it).
            self._tx.move(claimed, Change(Source.API, capture_pending=True))
            raise
        except GatewayError:
            self._tx.move(claimed, Change(Source.API, capture_claimed_at=None))
            raise
        return self._tx.move(
            claimed,
            Change(
                Source.API,
                (Step(S.CAPTURED, "capture"),),
                captured=amount or claimed.amount,
                capture_pending=False,
                capture_claimed_at=None,
            ),
        )

    @staticmethod
    def _check_capturable(charge: Charge, amount: Decimal | None) -> None:
        if charge.status is not S.AUTHORIZED:
            raise InvalidTransitionError(f"a {charge.status.value} charge cannot be captured")
        if amount is not None and amount > charge.amount:
            raise ValidationError(
                "the request is invalid", {"amount": "must not exceed the authorized amount"}
            )
        if charge.epay.transaction_id is None:
            raise InvalidTransitionError("the charge has no ePay transaction to capture")
        if charge.void_pending:
            raise InvalidTransitionError("the charge is being cancelled")


def _sooner(earlier: PaymentsError | None, exhausted: InvoiceSpaceExhaustedError) -> PaymentsError:
    """Of two terminals' refusals, the one whose space frees first (what Retry-After tells); a
    refusal of another kind stands."""
    if not isinstance(earlier, InvoiceSpaceExhaustedError):
        return earlier or exhausted
    if exhausted.retry_after is None or earlier.retry_after is None:
        return earlier if earlier.retry_after is not None else exhausted
    return min(earlier, exhausted, key=lambda e: e.retry_after or 0)


def _already_captured(charge: Charge, amount: Decimal | None) -> bool:
    return charge.status is S.CAPTURED and (amount is None or amount == charge.captured_amount)
