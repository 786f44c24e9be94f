"""Use cases: create a charge (once), read it, capture it.

The service sees neither API Gateway events, nor boto3, nor urllib3: only the models and the
Gateway, Store and Telemetry ports.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from payments.errors import (
    ConflictError,
    DuplicateKeyError,
    GatewayError,
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    InvalidTransitionError,
    NotFoundError,
    StaleStateError,
    ValidationError,
)
from payments.gateway import AuthRequest, AuthResult, Deadline, Gateway, InvoiceTokenRequest
from payments.models import (
    CaptureMode,
    Charge,
    ChargeError,
    ChargeRequest,
    ChargeStatus,
    EpayRef,
    HistoryEntry,
    IdempotencyRecord,
    ThreeDSData,
    can_transition,
    decline_category,
    utc_now,
)

S = ChargeStatus
INVOICE_DIGITS = 9
MAX_INVOICE_ATTEMPTS = 5


class Store(Protocol):
    """What the use cases need from the charge store."""

    def allocate_invoice_number(self) -> int:
        """Next invoice counter value."""
        ...

    def create(self, charge: Charge, entry: HistoryEntry) -> None:
        """Write a new charge with its guards."""
        ...

    def get(self, charge_id: str) -> Charge | None:
        """Read a charge."""
        ...

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """Read an idempotency record."""
        ...

    def transition(self, current: Charge, updated: Charge, entries: list[HistoryEntry]) -> Charge:
        """Conditionally replace a charge and append history."""
        ...


class Telemetry(Protocol):
    """Logs and metrics of business outcomes, kept out of the use cases' way."""

    def bind_charge(self, charge: Charge) -> None:
        """Attach the charge id to every later log line of this invocation."""
        ...

    def transitioned(self, charge: Charge, previous: ChargeStatus | None, source: str) -> None:
        """A charge reached a new status."""
        ...

    def outcome(self, charge: Charge) -> None:
        """A write settled the charge in its current status."""
        ...

    def gateway_failure(self, charge: Charge, error: GatewayError) -> None:
        """ePay failed in a way an operator may need to know about."""
        ...


@dataclass(frozen=True)
class CreateResult:
    """The charge a create request produced, and whether it was a replay."""

    charge: Charge
    replayed: bool


def request_fingerprint(request: ChargeRequest) -> str:
    """A stable digest of a validated request, to tell a replay from a reused key."""
    canonical = json.dumps(request.fingerprint_fields(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def secret_hash_digest(secret_hash: str) -> str:
    """The digest we keep of a charge's secret_hash (the value itself is never stored)."""
    return hashlib.sha256(secret_hash.encode()).hexdigest()


class ChargeService:
    """Charges a saved card once, and settles the charge from ePay's answers."""

    def __init__(
        self,
        *,
        store: Store,
        gateway: Gateway,
        telemetry: Telemetry,
        public_base_url: str,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], str] = lambda: "ch_" + secrets.token_hex(16),
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._telemetry = telemetry
        self._base = public_base_url.rstrip("/")
        self._clock = clock
        self._new_id = new_id
        self._new_secret = new_secret

    @property
    def post_link(self) -> str:
        """Where ePay posts notifications of success."""
        return f"{self._base}/epay/postlink"

    @property
    def failure_post_link(self) -> str:
        """Where ePay posts notifications of failure."""
        return f"{self._base}/epay/postlink/failure"

    # --- create ----------------------------------------------------------------------------

    def create_charge(
        self, request: ChargeRequest, idempotency_key: str, deadline: Deadline
    ) -> CreateResult:
        """Charge a saved card once per idempotency key; the record is written before ePay."""
        fingerprint = request_fingerprint(request)
        existing = self._store.get_idempotency(idempotency_key)
        if existing is not None:
            return self._replay(existing, fingerprint)

        secret_hash = self._new_secret()
        charge = self._insert(request, idempotency_key, fingerprint, secret_hash)
        if charge is None:
            record = self._store.get_idempotency(idempotency_key)
            if record is None:  # the key's record vanished (TTL) between two reads
                raise IdempotencyInFlightError("the request is being processed, retry later")
            return self._replay(record, fingerprint)
        self._telemetry.bind_charge(charge)
        self._telemetry.transitioned(charge, None, "api")
        return CreateResult(self._authorize(charge, secret_hash, deadline), replayed=False)

    def _insert(
        self, request: ChargeRequest, key: str, fingerprint: str, secret_hash: str
    ) -> Charge | None:
        """Write the new charge; None when the idempotency key was taken meanwhile."""
        for _attempt in range(MAX_INVOICE_ATTEMPTS):
            invoice_id = request.invoice_id or str(self._store.allocate_invoice_number()).zfill(
                INVOICE_DIGITS
            )
            now = self._clock()
            charge = Charge(
                id=self._new_id(),
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
                invoice_id_alt=request.invoice_id_alt,
                name=request.name,
                email=request.email,
                phone=request.phone,
                back_link=request.back_link,
                failure_back_link=request.failure_back_link,
            )
            try:
                self._store.create(charge, HistoryEntry(None, S.PROCESSING, now, "api"))
            except DuplicateKeyError as exc:
                if exc.which == "idempotency":
                    return None
                if request.invoice_id is not None:
                    raise ConflictError(
                        "invoiceId is already used (or its last 6 digits are still reserved)"
                    ) from exc
                continue
            return charge
        raise ConflictError("could not allocate a free invoice id, retry later")

    def _replay(self, record: IdempotencyRecord, fingerprint: str) -> CreateResult:
        if record.request_hash != fingerprint:
            raise IdempotencyMismatchError(
                "this Idempotency-Key was used with a different request body"
            )
        charge = self._store.get(record.charge_id)
        if charge is None or charge.status is S.PROCESSING:
            raise IdempotencyInFlightError(
                "a request with this Idempotency-Key is still being processed"
            )
        if charge.status is S.FAILED and charge.error is not None:
            raise GatewayUnavailableError(charge.error.message, operation="token")
        return CreateResult(charge, replayed=True)

    def _authorize(self, charge: Charge, secret_hash: str, deadline: Deadline) -> Charge:
        try:
            token = self._gateway.invoice_token(
                InvoiceTokenRequest(
                    invoice_id=charge.invoice_id,
                    amount=charge.amount,
                    currency=charge.currency,
                    post_link=self.post_link,
                    failure_post_link=self.failure_post_link,
                    secret_hash=secret_hash,
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
            result = self._gateway.authorize(token, self._auth_request(charge), deadline)
        except GatewayRejectedError as exc:
            error = ChargeError(
                code=str(exc.gateway_code if exc.gateway_code is not None else "rejected"),
                message=exc.message,
                category=decline_category(exc.gateway_code).value,
            )
            return self._move(charge, [(S.DECLINED, f"ePay code {exc.gateway_code}")], error=error)
        except GatewayUnknownOutcomeError as exc:
            self._telemetry.gateway_failure(charge, exc)
            return self._move(charge, [(S.UNKNOWN, exc.message)], needs_check=True)
        except GatewayUnavailableError as exc:
            self._telemetry.gateway_failure(charge, exc)
            self._fail(charge, "auth", exc)
            raise GatewayUnavailableError(
                "ePay is unavailable, the card was not charged", operation="auth"
            ) from exc

        epay = EpayRef(
            transaction_id=result.transaction_id,
            reference=result.reference,
            approval_code=result.approval_code,
            card_mask=result.card_mask,
        )
        if result.status == "3D":
            assert result.secure3d is not None
            three_ds = ThreeDSData(
                pa_req=result.secure3d.pa_req,
                md=result.secure3d.md,
                action=result.secure3d.action,
                access_token=token.access_token,
                token_expires_at=token.expires_at,
                term_url=result.secure3d.term_url,
            )
            return self._move(charge, [(S.REQUIRES_3DS, "")], epay=epay, three_ds=three_ds)
        if result.status == "CHARGE":
            return self._move(
                charge, [(S.CAPTURED, "single-stage")], epay=epay, captured=charge.amount
            )
        return self._after_auth(charge, result, epay, deadline)

    def _after_auth(
        self, charge: Charge, result: AuthResult, epay: EpayRef, deadline: Deadline
    ) -> Charge:
        if charge.capture is CaptureMode.MANUAL or result.transaction_id is None:
            return self._move(charge, [(S.AUTHORIZED, "")], epay=epay)
        try:
            self._gateway.capture(result.transaction_id, None, deadline)
        except GatewayError as exc:
            # The money is held; the reconciler retries or checks the capture later.
            self._telemetry.gateway_failure(charge, exc)
            detail = f"auto capture failed: {type(exc).__name__}"
            return self._move(charge, [(S.AUTHORIZED, detail)], epay=epay, needs_check=True)
        return self._move(
            charge,
            [(S.AUTHORIZED, ""), (S.CAPTURED, "auto capture")],
            epay=epay,
            captured=charge.amount,
        )

    def _auth_request(self, charge: Charge) -> AuthRequest:
        return AuthRequest(
            invoice_id=charge.invoice_id,
            amount=charge.amount,
            currency=charge.currency,
            card_id=charge.card_id,
            account_id=charge.account_id,
            description=charge.description,
            language=charge.language,
            recurrent=charge.recurrent,
            post_link=self.post_link,
            failure_post_link=self.failure_post_link,
            invoice_id_alt=charge.invoice_id_alt,
            name=charge.name,
            email=charge.email,
            phone=charge.phone,
            back_link=charge.back_link,
            failure_back_link=charge.failure_back_link,
        )

    def _fail(self, charge: Charge, step: str, exc: GatewayError) -> None:
        error = ChargeError(
            code=GatewayUnavailableError.code,
            message="ePay is unavailable, the card was not charged",
            category="other",
        )
        self._move(charge, [(S.FAILED, f"{step}: {type(exc).__name__}")], error=error)

    # --- read and capture -----------------------------------------------------------------

    def get_charge(self, charge_id: str) -> Charge:
        """The stored charge, or NotFoundError."""
        charge = self._store.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        return charge

    def capture_charge(self, charge_id: str, amount: Decimal | None, deadline: Deadline) -> Charge:
        """Charge a held AUTH wholly or partly; capturing a captured charge again is a no-op."""
        charge = self.get_charge(charge_id)
        self._telemetry.bind_charge(charge)
        if charge.status is S.CAPTURED and (amount is None or amount == charge.captured_amount):
            return charge
        if charge.status is not S.AUTHORIZED:
            raise InvalidTransitionError(f"a {charge.status.value} charge cannot be captured")
        if amount is not None and amount > charge.amount:
            raise ValidationError(
                "the request is invalid", {"amount": "must not exceed the authorized amount"}
            )
        if charge.epay.transaction_id is None:
            raise InvalidTransitionError("the charge has no ePay transaction to capture")
        try:
            self._gateway.capture(charge.epay.transaction_id, amount, deadline)
        except GatewayUnknownOutcomeError:
            self._move(charge, [], needs_check=True)
            raise
        return self._move(
            charge, [(S.CAPTURED, "capture")], captured=amount or charge.amount, needs_check=False
        )

    # --- the one way to change a charge ----------------------------------------------------

    def _move(
        self,
        charge: Charge,
        steps: list[tuple[ChargeStatus, str]],
        *,
        epay: EpayRef | None = None,
        error: ChargeError | None = None,
        three_ds: ThreeDSData | None = None,
        captured: Decimal | None = None,
        needs_check: bool | None = None,
    ) -> Charge:
        """Apply transitions through the state machine with one conditional write.

        If another path (postLink, 3DS return, reconciler) moved the charge first, its state
        wins and is returned.
        """
        now = self._clock()
        entries: list[HistoryEntry] = []
        status = charge.status
        for target, detail in steps:
            if not can_transition(status, target):
                raise InvalidTransitionError(f"{status.value} cannot become {target.value}")
            entries.append(HistoryEntry(status, target, now, "api", detail))
            status = target
        updated = replace(
            charge,
            status=status,
            updated_at=now,
            epay=epay or charge.epay,
            error=error or charge.error,
            three_ds=three_ds or charge.three_ds,
            captured_amount=captured if captured is not None else charge.captured_amount,
            needs_check=charge.needs_check if needs_check is None else needs_check,
        )
        try:
            stored = self._store.transition(charge, updated, entries)
        except StaleStateError:
            latest = self._store.get(charge.id)
            if latest is None:
                raise
            return latest
        for entry in entries:
            step = replace(stored, status=entry.to_status)
            self._telemetry.transitioned(step, entry.from_status, entry.source)
        if entries:
            self._telemetry.outcome(stored)
        return stored
