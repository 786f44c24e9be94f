"""The only place that wires concrete parts: built lazily, once per container.

Every function imports this module, so the parts only some functions use (postLink, subscriptions,
events) are imported inside their builders: a charge's cold start does not pay for them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from payments.aws.charge_store import ChargeStore
from payments.aws.telemetry import (
    PowertoolsPostLinkTelemetry,
    PowertoolsTelemetry,
    event_publish_failed,
)
from payments.charges.model import Charge
from payments.charges.service import ChargeService
from payments.config import SECRET_MAX_AGE_SECONDS, Settings, load_settings, parse_credentials
from payments.epay.client import EpayClient, EpayCredentials, Timeouts
from payments.shared.clock import utc_now

if TYPE_CHECKING:
    from payments.aws.inbox import InboxStore
    from payments.aws.subscription_store import SubscriptionStore
    from payments.charges.page_tokens import PageTokens
    from payments.charges.postlink import PostLinkService
    from payments.charges.reconciler import Reconciler
    from payments.charges.threeds import PageLinks, ThreeDSService
    from payments.shared.events import DomainEvents
    from payments.subscriptions.renewals import Renewals
    from payments.subscriptions.service import Subscriptions

_lock = threading.RLock()
AWS_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"}
)


@cache
def settings() -> Settings:
    """Settings validated from the environment, once."""
    return load_settings(os.environ)


@cache
def _session() -> Any:
    return boto3.session.Session()


@cache
def _secrets() -> SecretsProvider:
    with _lock:
        client = _session().client("secretsmanager", config=AWS_CONFIG)
    return SecretsProvider(boto3_client=client)


def credentials() -> EpayCredentials:
    """ePay credentials from Secrets Manager, cached for a few minutes per container."""
    secret = _secrets().get(settings().secret_id, max_age=SECRET_MAX_AGE_SECONDS, transform="json")
    return EpayCredentials(*parse_credentials(secret))


@cache
def gateway() -> EpayClient:
    """The ePay client."""
    config = settings()
    return EpayClient(
        oauth_url=config.oauth_url,
        api_url=config.api_url,
        credentials=credentials,
        scope=config.scope,
        timeouts=Timeouts(connect=config.connect_timeout, read=config.read_timeout),
        confirm_path=config.confirm_path,
    )


@cache
def store() -> ChargeStore:
    """The DynamoDB charge store."""
    with _lock:
        client = _session().client("dynamodb", config=AWS_CONFIG)
    return ChargeStore(settings().table_name, client)


@cache
def charge_service() -> ChargeService:
    """The charge use cases, wired to the real adapters."""
    with _lock:
        return ChargeService(
            store=store(),
            gateway=gateway(),
            # charge.* events are not published here: the table's stream publishes them
            # (functions/charge_events), so a crash after the write cannot lose one.
            telemetry=PowertoolsTelemetry(),
            public_base_url=settings().public_base_url,
            page_token=page_tokens().issue,
            clock=now,
        )


@cache
def reconciler() -> Reconciler:
    """The reconciler, over the same charge service and store."""
    from payments.charges.reconciler import Reconciler

    return Reconciler(charges=charge_service(), store=store())


@cache
def inbox() -> InboxStore:
    """The DynamoDB inbox of postLink notifications (same table)."""
    from payments.aws.inbox import InboxStore

    with _lock:
        client = _session().client("dynamodb", config=AWS_CONFIG)
    return InboxStore(settings().table_name, client)


@cache
def postlink_service() -> PostLinkService:
    """The postLink intake, settling through the charge service."""
    from payments.charges.postlink import PostLinkService

    with _lock:
        return PostLinkService(
            inbox=inbox(),
            charges=store(),
            settler=charge_service(),
            terminal_id=gateway().terminal_id,
            telemetry=PowertoolsPostLinkTelemetry(),
        )


@cache
def page_tokens() -> PageTokens:
    """3DS page tokens keyed by a label-derived key of the ePay client secret (never stored)."""
    from payments.charges.page_tokens import PageTokens, derive_key

    return PageTokens(lambda: derive_key(credentials().client_secret))


@cache
def page_links() -> PageLinks:
    """The public URLs of the 3DS step (page with its token, TermUrl)."""
    from payments.charges.threeds import PageLinks

    return PageLinks(page_tokens(), settings().public_base_url)


def page_url(charge: Charge) -> str | None:
    """`nextAction.url` of a charge (None unless it is REQUIRES_3DS with a page token)."""
    return page_links().page_url(charge)


@cache
def three_ds_service() -> ThreeDSService:
    """The 3-D Secure page and return, settling through the charge service."""
    from payments.charges.threeds import ThreeDSService

    with _lock:
        return ThreeDSService(
            charges=charge_service(),
            store=store(),
            gateway=gateway(),
            telemetry=PowertoolsTelemetry(),
            links=page_links(),
            allow_loopback_acs=settings().allow_loopback_acs,
        )


def reset() -> None:
    """Forget everything built (tests change the environment between cases)."""
    for built in (settings, _session, _secrets, gateway, store, charge_service, reconciler):
        built.cache_clear()
    for postlink_built in (inbox, postlink_service):
        postlink_built.cache_clear()
    for threeds_built in (page_tokens, page_links, three_ds_service):
        threeds_built.cache_clear()
    for subscription_built in (events, subscription_store, subscriptions, renewals):
        subscription_built.cache_clear()
    use_clock(utc_now)


# ---------------------------------------------------------------- subscriptions (issue 6)

_clock: list[Callable[[], datetime]] = [utc_now]


def now() -> datetime:
    """The one clock every use case reads (tests move it with `use_clock`)."""
    return _clock[0]()


def use_clock(clock: Callable[[], datetime]) -> None:
    """Replace the clock (tests: a fake one that moves through months in milliseconds)."""
    _clock[0] = clock


@cache
def events() -> DomainEvents:
    """Domain events on the stack's EventBridge bus (EVENT_BUS_NAME; none when empty)."""
    from payments.aws.eventbridge import EventBridgeEvents
    from payments.shared.events import NullEvents

    bus = os.environ.get("EVENT_BUS_NAME", "")
    if not bus:
        return NullEvents()
    with _lock:
        client = _session().client("events", config=AWS_CONFIG)
    return EventBridgeEvents(client, bus)


# The dispatcher leases and enqueues from every shard at once (one thread per shard).
_DISPATCH_CONFIG = AWS_CONFIG.merge(Config(max_pool_connections=64))


@cache
def subscription_store() -> SubscriptionStore:
    """Subscriptions in the payments table."""
    from payments.aws.subscription_store import SubscriptionStore

    with _lock:
        client = _session().client("dynamodb", config=_DISPATCH_CONFIG)
    return SubscriptionStore(settings().table_name, client, clock=now)


@cache
def subscriptions() -> Subscriptions:
    """The subscriptions API's use cases."""
    from payments.subscriptions.service import Subscriptions

    return Subscriptions(
        store=subscription_store(),
        events=events(),
        clock=now,
        on_publish_error=event_publish_failed,
    )


@cache
def renewals() -> Renewals:
    """Dispatch and renewal, charging through the same ChargeService as POST /charges."""
    from payments.aws.sqs import SqsRenewalQueue
    from payments.subscriptions.policy import load_renewal_policy
    from payments.subscriptions.renewals import Renewals

    queue_url = os.environ.get("RENEWAL_QUEUE_URL", "")
    with _lock:
        sqs = _session().client("sqs", config=_DISPATCH_CONFIG)
    return Renewals(
        store=subscription_store(),
        queue=SqsRenewalQueue(sqs, queue_url),
        charges=charge_service(),
        events=events(),
        policy=load_renewal_policy(os.environ),
        clock=now,
    )
