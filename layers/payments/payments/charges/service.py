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

from payments.charges.declines import decline_category
from payments.charges.model import (
    PROCESSING_SAFE_AGE,
    CaptureMode,
    Charge,
    ChargeError,
    ChargeStatus,
    EpayRef,
    HistoryEntry,
    ThreeDSData,
    can_transition,
    secret_hash_digest,
)
from payments.charges.ports import (
    AuthRequest,
    Gateway,
    InvoiceTokenRequest,
    StatusResult,
    Store,
    Telemetry,
)
from payments.charges.requests import ChargeRequest
from payments.charges.settlement import _STATUS_TARGETS, Settlement
from payments.charges.transitions import _first_check, _merge_epay
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
from payments.shared.clock import utc_now
from payments.shared.deadline import Deadline
from payments.shared.idempotency import IdempotencyRecord

S = ChargeStatus


INVOICE_DIGITS = 9


MAX_INVOICE_ATTEMPTS = 5


@dataclass(frozen=True)
class CreateResult:
    """The charge a create request produced, and whether it was a replay."""

    charge: Charge
    replayed: bool


def request_fingerprint(request: ChargeRequest) -> str:
    """A stable digest of a validated request, to tell a replay from a reused key."""
    canonical = json.dumps(request.fingerprint_fields(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


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
        page_token: Callable[[str], tuple[str, str]] | None = None,
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._telemetry = telemetry
        self._base = public_base_url.rstrip("/")
        self._clock = clock
        self._new_id = new_id
        self._new_secret = new_secret
        # charge id -> (nonce, digest) of the customer's 3DS page token (payments.pagetoken)
        self._page_token = page_token

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
                next_check_at=now + PROCESSING_SAFE_AGE,
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
            return self._move(charge, [(S.UNKNOWN, exc.message)])
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
            return self._move(charge, [(S.REQUIRES_3DS, "")], epay=epay, three_ds=three_ds)
        if result.status == "CHARGE":
            return self._move(
                charge, [(S.CAPTURED, "single-stage")], epay=epay, captured=charge.amount
            )
        return self._authorized(charge, epay, "api", "", deadline)

    def _authorized(
        self, charge: Charge, epay: EpayRef, source: str, detail: str, deadline: Deadline
    ) -> Charge:
        """Record an AUTH (money held); with auto capture, capture it first and write once."""
        steps: list[tuple[ChargeStatus, str]] = []
        if charge.status is not S.AUTHORIZED:
            steps.append((S.AUTHORIZED, detail))
        if charge.capture is CaptureMode.MANUAL or epay.transaction_id is None:
            return self._move(charge, steps, epay=epay, source=source, capture_pending=False)
        try:
            self._gateway.capture(epay.transaction_id, None, deadline)
        except GatewayError as exc:
            if isinstance(exc, GatewayRejectedError) and self._captured_elsewhere(charge, deadline):
                # Another path (postLink, 3DS return, reconciler) captured it a moment ago.
                return self._move(
                    charge,
                    [*steps, (S.CAPTURED, "captured by a concurrent path")],
                    epay=epay,
                    captured=charge.amount,
                    source=source,
                    capture_pending=False,
                )
            # The money is held; the reconciler retries or checks the capture later.
            self._telemetry.gateway_failure(charge, exc)
            failed = f"auto capture failed: {type(exc).__name__}"
            return self._move(
                charge,
                [(S.AUTHORIZED, f"{detail}; {failed}".strip("; "))] if steps else [],
                epay=epay,
                source=source,
                capture_pending=True,
            )
        return self._move(
            charge,
            [*steps, (S.CAPTURED, "auto capture")],
            epay=epay,
            captured=charge.amount,
            source=source,
            capture_pending=False,
        )

    def _captured_elsewhere(self, charge: Charge, deadline: Deadline) -> bool:
        """After a refused capture: does ePay already show the money taken?"""
        try:
            answer = self._gateway.status(charge.invoice_id, deadline)
        except GatewayError:
            return False
        return answer.transaction is not None and answer.transaction.status_name == "CHARGE"

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
            self._move(charge, [], capture_pending=True)
            raise
        return self._move(
            charge,
            [(S.CAPTURED, "capture")],
            captured=amount or charge.amount,
            capture_pending=False,
        )

    # --- settling from ePay's status API (every path goes through here) ----------------------

    def settle(self, charge_id: str, source: str, deadline: Deadline) -> Settlement:
        """Ask ePay's status API about a charge and apply the answer through the state machine."""
        charge = self.get_charge(charge_id)
        self._telemetry.bind_charge(charge)
        answer = self._gateway.status(charge.invoice_id, deadline)
        return self.apply_status(charge, answer, source, deadline)

    def apply_status(
        self, charge: Charge, answer: StatusResult, source: str, deadline: Deadline
    ) -> Settlement:
        """Move a charge to what the status API says, once; contradictions go to NEEDS_REVIEW."""
        if charge.status is S.NEEDS_REVIEW:
            return Settlement(charge, "unchanged")
        if answer.result_code == "102":
            return Settlement(charge, "not_found")
        tx = answer.transaction
        target = _STATUS_TARGETS.get(tx.status_name) if tx else None
        if tx is None or target is None:
            return Settlement(charge, "pending", tx.status_name if tx else None)
        epay = EpayRef(tx.transaction_id, tx.reference, tx.approval_code, tx.card_mask)
        said = f"status API: {tx.status_name}"
        if tx.currency not in (None, charge.currency) or (
            tx.amount is not None and tx.amount > charge.amount
        ):
            return self._review(charge, f"{said} for {tx.amount} {tx.currency}", source)
        if target is charge.status:
            if target is S.AUTHORIZED and charge.capture_pending:
                return Settlement(self._authorized(charge, epay, source, said, deadline), "changed")
            return Settlement(charge, "unchanged")
        if not can_transition(charge.status, target):
            return self._review(charge, f"{said} but the charge is {charge.status.value}", source)
        if target is S.AUTHORIZED:
            return Settlement(self._authorized(charge, epay, source, said, deadline), "changed")
        error = None
        if target is S.DECLINED:
            error = ChargeError(
                code=str(tx.reason_code if tx.reason_code is not None else "rejected"),
                message=tx.reason or "declined",
                category=decline_category(tx.reason_code).value,
            )
        captured = (tx.amount or charge.amount) if target is S.CAPTURED else None
        moved = self._move(
            charge,
            [(target, said)],
            source=source,
            epay=epay,
            error=error,
            captured=captured,
            capture_pending=False,
        )
        return Settlement(moved, "changed")

    def conclude(self, charge: Charge, target: ChargeStatus, detail: str, source: str) -> Charge:
        """Settle without ePay's word: EXPIRED 3DS, FAILED (never at ePay), NEEDS_REVIEW."""
        if not can_transition(charge.status, target):
            raise InvalidTransitionError(f"{charge.status.value} cannot become {target.value}")
        error = None
        if target is S.FAILED:
            error = ChargeError("not_attempted", "ePay has no record of this charge", "other")
        return self._move(charge, [(target, detail)], source=source, error=error)

    def end_3ds(
        self,
        charge: Charge,
        target: ChargeStatus,
        detail: str,
        source: str,
        error: ChargeError | None = None,
    ) -> Charge:
        """End a REQUIRES_3DS charge the customer can no longer complete (its page expired, or
        ePay's ACS address is unusable); any other status is returned as it is."""
        if charge.status is not S.REQUIRES_3DS:
            return charge
        return self._move(charge, [(target, detail)], source=source, error=error)

    def _review(self, charge: Charge, detail: str, source: str) -> Settlement:
        if not can_transition(charge.status, S.NEEDS_REVIEW):
            return Settlement(charge, "unchanged")
        return Settlement(self._move(charge, [(S.NEEDS_REVIEW, detail)], source=source), "changed")

    # --- the one way to change a charge ----------------------------------------------------

    def _move(
        self,
        charge: Charge,
        steps: list[tuple[ChargeStatus, str]],
        *,
        source: str = "api",
        epay: EpayRef | None = None,
        error: ChargeError | None = None,
        three_ds: ThreeDSData | None = None,
        captured: Decimal | None = None,
        capture_pending: bool | None = None,
    ) -> Charge:
        """Apply transitions through the state machine with one conditional write.

        The next reconciler check is scheduled from the resulting status. If another path
        (postLink, 3DS return, reconciler) moved the charge first, its state wins and is returned.
        """
        now = self._clock()
        entries: list[HistoryEntry] = []
        status = charge.status
        for target, detail in steps:
            if not can_transition(status, target):
                raise InvalidTransitionError(f"{status.value} cannot become {target.value}")
            entries.append(HistoryEntry(status, target, now, source, detail))
            status = target
        updated = replace(
            charge,
            status=status,
            updated_at=now,
            epay=_merge_epay(charge.epay, epay),
            error=error or charge.error,
            three_ds=three_ds or charge.three_ds,
            captured_amount=captured if captured is not None else charge.captured_amount,
            capture_pending=charge.capture_pending if capture_pending is None else capture_pending,
        )
        if entries:
            # A new state starts a fresh schedule; otherwise keep the reconciler's ladder.
            updated = replace(updated, next_check_at=_first_check(updated, now), check_attempts=0)
        elif updated.next_check_at is None:
            updated = replace(updated, next_check_at=_first_check(updated, now))
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
