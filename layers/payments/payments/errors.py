"""One error hierarchy for the whole service.

Each error carries facts (an API code, an HTTP status, whether a retry may help) and never a raw
request or response body, so it is always safe to log.
"""

from __future__ import annotations


class PaymentsError(Exception):
    """Base of every error this service raises on purpose."""

    code = "internal_error"
    http_status = 500
    retryable = False
    retry_after: int | None = None  # seconds a caller should wait, when known (Retry-After)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(PaymentsError):
    """Settings or credentials are missing or invalid."""

    code = "configuration_error"


class ValidationError(PaymentsError):
    """The request is malformed; `fields` maps each bad field to what is wrong with it."""

    code = "validation_error"
    http_status = 400

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = dict(fields or {})


class NotFoundError(PaymentsError):
    """The resource does not exist."""

    code = "not_found"
    http_status = 404


class ConflictError(PaymentsError):
    """The request conflicts with the current state of a resource."""

    code = "conflict"
    http_status = 409


class IdempotencyInFlightError(ConflictError):
    """A request with the same idempotency key is still being processed."""

    code = "idempotency_in_flight"
    retryable = True


class CaptureInProgressError(ConflictError):
    """Another request holds the claim to capture this charge: read it again shortly."""

    code = "capture_in_progress"
    retryable = True


class IdempotencyMismatchError(PaymentsError):
    """The idempotency key was used before with a different request body."""

    code = "idempotency_key_reused"
    http_status = 422


class InvalidTransitionError(ConflictError):
    """The charge's status does not allow the requested operation."""

    code = "invalid_state"


class ResolutionContradictedError(ConflictError):
    """An operator's resolution of a NEEDS_REVIEW charge is not what ePay's status API says;
    `gateway_status` is ePay's status name (or "not found"), nothing was changed."""

    code = "resolution_contradicted"

    def __init__(self, message: str, gateway_status: str | None = None) -> None:
        super().__init__(message)
        self.gateway_status = gateway_status


class ResolutionUnconfirmedError(ConflictError):
    """ePay's status API gave no final answer (pending, or unreadable): a resolution cannot be
    checked against it yet; nothing was changed."""

    code = "resolution_unconfirmed"
    retryable = True


class UnidentifiedCallerError(PaymentsError):
    """An operator action arrived without the caller's IAM identity, so it could not be
    audited; nothing was done."""

    code = "caller_unidentified"
    http_status = 403


class StaleStateError(ConflictError):
    """A conditional write lost a race: the item changed since it was read."""

    code = "concurrent_update"
    retryable = True


class StoreUnavailableError(PaymentsError):
    """DynamoDB throttled or failed; nothing is known to have been written."""

    code = "store_unavailable"
    http_status = 503
    retryable = True


class GatewayError(PaymentsError):
    """Base of ePay failures."""

    code = "gateway_error"
    http_status = 502

    def __init__(self, message: str, *, operation: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.operation = operation
        self.gateway_http_status = http_status


class GatewayUnavailableError(GatewayError):
    """ePay could not be reached and the request surely did not take effect."""

    code = "gateway_unavailable"
    http_status = 503
    retryable = True


class GatewayRejectedError(GatewayError):
    """ePay refused the request for good: a decline with a code ePay documents as final, or a
    failed operation. `decline_category` (hard, soft, authentication, other) is the adapter's
    reading of the code, so nothing beyond it reads ePay's code numbers."""

    code = "gateway_rejected"
    http_status = 402

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        gateway_code: int | None,
        http_status: int | None = None,
        decline_category: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, http_status=http_status)
        self.gateway_code = gateway_code
        self.decline_category = decline_category


class GatewayUnknownOutcomeError(GatewayError):
    """The request may or may not have taken effect at ePay (timeout, 5xx, broken body, or an
    error code ePay does not document as final)."""

    code = "gateway_unknown_outcome"
    http_status = 502


class DuplicateKeyError(ConflictError):
    """A uniqueness guard already holds this value: `which` is idempotency, invoice or suffix."""

    code = "duplicate"

    def __init__(self, message: str, which: str) -> None:
        super().__init__(message)
        self.which = which


class PayloadTooLargeError(ValidationError):
    """A request body is over the size the route accepts."""

    code = "payload_too_large"
    http_status = 413


class ForgedNotificationError(PaymentsError):
    """A postLink notification failed verification (secret_hash, invoice, amount, currency or
    terminal differ from the stored charge); `mismatched` names the fields, never their values."""

    code = "forbidden"
    http_status = 403

    def __init__(self, message: str, mismatched: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.mismatched = mismatched


class EventPublishError(PaymentsError):
    """The event bus did not take every domain event (the fact itself is already stored)."""

    code = "event_publish_failed"
    http_status = 503
    retryable = True


class QueueUnavailableError(PaymentsError):
    """SQS did not take every message; those it refused were not enqueued."""

    code = "queue_unavailable"
    http_status = 503
    retryable = True


class InvoiceSpaceExhaustedError(PaymentsError):
    """Every terminal that may take the charge has all its invoice suffixes reserved; nothing
    was sent to ePay. `retry_after` is the seconds until the first suffix frees."""

    code = "invoice_space_exhausted"
    http_status = 503
    retryable = True

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AmountNotRefundableError(ConflictError):
    """The amount is more than is left to refund (captured, less refunded and pending refunds)."""

    code = "amount_not_refundable"


class CardRemovedError(ConflictError):
    """The card was removed from its account: it is not charged again."""

    code = "card_removed"


class CardAccountMismatchError(PaymentsError):
    """The card is saved under another account than the one named."""

    code = "card_account_mismatch"
    http_status = 422


class CardRemovalInProgressError(ConflictError):
    """Another request is removing this card at ePay: read it again shortly."""

    code = "card_removal_in_progress"
    retryable = True
