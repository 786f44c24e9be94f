"""An operator settles a NEEDS_REVIEW charge (`POST /charges/{chargeId}/resolve`), audited.

A person looked at the transaction in ePay's merchant cabinet and says what the charge is. The
service takes their word only where ePay's status API agrees, so a typo or a wrong charge cannot
record money that was not taken (or hide money that was):

* only a NEEDS_REVIEW charge is resolved (else 409 `invalid_state`), and only to a status the
  state machine lets NEEDS_REVIEW become (`RESOLVABLE`; else 400 naming `status`);
* the status API is asked; its final status, read through `settlement.SETTLES_AS` (the one
  reading of ePay's statuses), must be the status asked for. "No such invoice" (resultCode 102)
  allows FAILED or DECLINED only. A different status is 409 `resolution_contradicted`; a status
  not final yet (NEW, 3D, FINGERPRINT) or an answer without one is 409 `resolution_unconfirmed`;
  ePay not answering is 503 `gateway_unavailable`. None of these changes anything;
* the charge moves by one conditional write of the charge writer (`ChargeTransitions`), with a
  history entry of source `operator` that names the IAM caller, their note and what ePay said;
* resolving again to the status the charge was resolved to answers the charge as it is
  (idempotent by state); a racing resolution to another status is 409 `concurrent_update`.

Resolving never moves money at ePay: a charge resolved AUTHORIZED stays held until captured.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from payments.charges.model import (
    TRANSITIONS,
    Charge,
    ChargeError,
    ChargeStatus,
    EpayRef,
    S,
    Source,
)
from payments.charges.settlement import PENDING_AT_GATEWAY, SETTLES_AS
from payments.charges.transitions import Change, ChargeTransitions, Step
from payments.errors import (
    GatewayError,
    GatewayUnavailableError,
    InvalidTransitionError,
    NotFoundError,
    ResolutionContradictedError,
    ResolutionUnconfirmedError,
    StaleStateError,
    UnidentifiedCallerError,
    ValidationError,
)
from payments.shared.fields import CONTROL_RE, is_unicode_text

if TYPE_CHECKING:
    from payments.charges.payment_gateway import StatusResult, TransactionStatus
    from payments.charges.ports import ChargeHistory
    from payments.shared.deadline import Deadline

# What an operator may resolve a NEEDS_REVIEW charge to: what the state machine allows.
RESOLVABLE: frozenset[ChargeStatus] = TRANSITIONS[S.NEEDS_REVIEW]
# What "ePay has no such invoice" (resultCode 102) can confirm: nothing was taken.
UNKNOWN_AT_GATEWAY_ALLOWS = frozenset({S.FAILED, S.DECLINED})
MAX_NOTE = 500
MAX_CALLER = 512
_FIELDS = frozenset({"status", "note"})
_STATUS_RULE = "must be one of " + ", ".join(sorted(s.value for s in RESOLVABLE))
_NOTE_RULE = f"must be text of 1 to {MAX_NOTE} characters, without control characters"


@dataclass(frozen=True)
class Resolution:
    """A validated resolution: the status a person found, and why they say so."""

    status: ChargeStatus
    note: str


def parse_resolution(body: Any) -> Resolution:
    """Validate a resolve request's body, or raise ValidationError naming every bad field."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    errors = dict.fromkeys(sorted(str(k)[:64] for k in set(body) - _FIELDS), "unknown field")
    status = body.get("status")
    if not (isinstance(status, str) and status in {s.value for s in RESOLVABLE}):
        errors["status"] = _STATUS_RULE
    note = body.get("note")
    if not _is_note(note):
        errors["note"] = _NOTE_RULE
    if errors:
        raise ValidationError("the request is invalid", errors)
    return Resolution(ChargeStatus(str(status)), str(note))


def _is_note(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_NOTE
        and bool(value.strip())
        and CONTROL_RE.search(value) is None
        and is_unicode_text(value)
    )


def operator_of(caller: str | None) -> str:
    """The IAM caller an operator action is recorded under; refused when there is none."""
    if caller is None or not caller.strip() or CONTROL_RE.search(caller):
        raise UnidentifiedCallerError("the caller's IAM identity is unknown; nothing was done")
    return caller.strip()[:MAX_CALLER]


def confirmation(requested: ChargeStatus, answer: StatusResult) -> str:
    """What ePay's status answer says in support of `requested` (for the history), or raise:
    ResolutionContradictedError (ePay says otherwise), ResolutionUnconfirmedError (ePay has
    no final status yet, or none we can read)."""
    if answer.not_found:
        if requested in UNKNOWN_AT_GATEWAY_ALLOWS:
            return "status API: no such invoice"
        raise ResolutionContradictedError(
            f"ePay has no such invoice, so the charge cannot be {requested.value}; "
            "it can be FAILED or DECLINED",
            "not found",
        )
    tx = answer.transaction
    gateway = tx.status if tx is not None else None
    if tx is None or gateway is None or gateway in PENDING_AT_GATEWAY:
        shown = tx.status_name if tx is not None else f"resultCode {answer.result_code}"
        raise ResolutionUnconfirmedError(
            f"ePay's status API has no final status for this charge ({shown}); nothing was changed"
        )
    found = SETTLES_AS.get(gateway)
    if found is not requested:
        means = found.value if found is not None else "no charge status"
        raise ResolutionContradictedError(
            f"ePay's status API says {tx.status_name} ({means}), not {requested.value}; "
            "nothing was changed",
            tx.status_name,
        )
    return f"status API: {tx.status_name}, {tx.amounts}"


def resolution_change(
    charge: Charge, resolution: Resolution, operator: str, said: str, answer: StatusResult
) -> Change:
    """The one write that resolves `charge`: its step (source `operator`, the history entry
    naming the operator, the note and ePay's answer) and what ePay's answer tells of it."""
    detail = f"by {operator}: {resolution.note} [{said}]"
    target = resolution.status
    tx = answer.transaction
    epay = EpayRef(tx.transaction_id, tx.reference, tx.approval_code, tx.card_mask) if tx else None
    return Change(
        Source.OPERATOR,
        (Step(target, detail),),
        epay=epay,
        error=_error(target, tx),
        captured=_captured(charge, tx) if target is S.CAPTURED else None,
        capture_pending=False,
        capture_claimed_at=None,
        void_pending=False,
    )


def _captured(charge: Charge, tx: TransactionStatus | None) -> Decimal:
    """What a CAPTURED charge took: ePay's figure when it is a part of the charge, else what we
    captured, else the charge's amount."""
    standing = tx.amounts.standing if tx is not None else None
    if standing is not None and 0 < standing <= charge.amount:
        return standing
    return charge.captured_amount if charge.captured_amount is not None else charge.amount


def _error(target: ChargeStatus, tx: TransactionStatus | None) -> ChargeError | None:
    if target is S.FAILED:
        return ChargeError("not_attempted", "ePay has no record of this charge", "other")
    if target is not S.DECLINED:
        return None
    if tx is None:
        return ChargeError("not_found", "ePay has no record of this charge", "other")
    return ChargeError(
        code=str(tx.reason_code if tx.reason_code is not None else "rejected"),
        message=tx.reason or "declined",
        category=tx.decline_category.value,
    )


class StatusSource(Protocol):
    """ePay's status API (PaymentGateway.status)."""

    def status(self, invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        """Ask ePay what happened to an invoice of a terminal."""
        ...


class ChargeResolutions:
    """Resolves NEEDS_REVIEW charges by an operator's word, where ePay agrees."""

    def __init__(
        self, *, charges: ChargeHistory, gateway: StatusSource, transitions: ChargeTransitions
    ) -> None:
        self._charges = charges
        self._gateway = gateway
        self._tx = transitions

    def resolve(
        self, charge_id: str, resolution: Resolution, operator: str, deadline: Deadline
    ) -> Charge:
        """Resolve a charge (see the module's rules); the charge as stored afterwards."""
        charge = self._charges.get(charge_id)
        if charge is None:
            raise NotFoundError("no such charge")
        if charge.status is not S.NEEDS_REVIEW:
            if self.resolved_to(charge, resolution.status):
                return charge  # resolved to this already: answered as it is
            raise InvalidTransitionError(
                f"only a NEEDS_REVIEW charge can be resolved; this one is {charge.status.value}"
            )
        try:
            answer = self._gateway.status(charge.invoice_id, charge.terminal_id, deadline)
        except GatewayError as exc:
            raise GatewayUnavailableError(
                "ePay's status API could not be asked; nothing was changed", operation="status"
            ) from exc
        said = confirmation(resolution.status, answer)
        change = resolution_change(charge, resolution, operator, said, answer)
        try:
            return self._tx.apply(charge, change)
        except StaleStateError:
            latest = self._tx.latest(charge)
            if self.resolved_to(latest, resolution.status):
                return latest  # another operator resolved it the same way at the same moment
            raise

    def resolved_to(self, charge: Charge, status: ChargeStatus) -> bool:
        """Whether `charge` is `status` because an operator resolved it so (its last step)."""
        if charge.status is not status:
            return False
        history = self._charges.history(charge.id)
        if not history:
            return False
        last = history[-1]
        return (
            last.source is Source.OPERATOR
            and last.from_status is S.NEEDS_REVIEW
            and last.to_status is status
        )
