"""A typed Python client for the ePay saved-card payments API.

from epay_payments_client import PaymentsClient

client = PaymentsClient("https://a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com")  # ApiUrl
charge = client.create_charge(amount=Decimal("1500.00"), currency="KZT", card_id=card,
                              account_id="customer-42", description="Order 42")
"""

from epay_payments_client.client import PaymentsClient, should_retry
from epay_payments_client.errors import (
    ApiConnectionError,
    ConfigurationError,
    Conflict,
    Forbidden,
    GatewayTimeout,
    InvalidRequest,
    NotFound,
    PaymentsApiError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    UnexpectedResponse,
    Unprocessable,
    ValidationFailed,
)
from epay_payments_client.models import (
    Card,
    CardSetup,
    Charge,
    EpayDetails,
    ErrorInfo,
    Interval,
    NextAction,
    Page,
    Refund,
    Subscription,
)
from epay_payments_client.transport import HttpResponse, Transport, Urllib3Transport

__all__ = [
    "ApiConnectionError",
    "Card",
    "CardSetup",
    "Charge",
    "ConfigurationError",
    "Conflict",
    "EpayDetails",
    "ErrorInfo",
    "Forbidden",
    "GatewayTimeout",
    "HttpResponse",
    "Interval",
    "InvalidRequest",
    "NextAction",
    "NotFound",
    "Page",
    "PaymentsApiError",
    "PaymentsClient",
    "RateLimited",
    "Refund",
    "ServerError",
    "ServiceUnavailable",
    "Subscription",
    "Transport",
    "UnexpectedResponse",
    "Unprocessable",
    "Urllib3Transport",
    "ValidationFailed",
    "should_retry",
]
