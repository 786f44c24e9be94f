"""The only place that wires concrete parts: built lazily, once per container.

Every function imports this module, so its top imports the AWS clients and the clock only; each
part (the settings too) is imported by its builder, and a function loads only the parts it builds:
the subscriptions API never loads the ePay client, the charge functions never load
subscriptions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from functools import cache, wraps
from typing import TYPE_CHECKING, Any

from payments import clients
from payments.shared.clock import utc_now

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from payments.aws.card_store import DynamoCardStore, DynamoSetupStore
    from payments.aws.charge_store import DynamoChargeStore
    from payments.aws.inbox import DynamoInbox
    from payments.aws.refund_store import DynamoRefundStore
    from payments.aws.subscription_store import DynamoSubscriptionStore
    from payments.cards.reconciler import SetupReconciler
    from payments.cards.service import CardService
    from payments.cards.settlement import SetupSettler
    from payments.cards.setups import CardSetups
    from payments.charges.invoices import InvoiceAllocator
    from payments.charges.links import PublicLinks
    from payments.charges.model import Charge
    from payments.charges.page_tokens import PageTokens
    from payments.charges.postlink import PostLinkService
    from payments.charges.reconcile_fanout import ReconcileFanOut
    from payments.charges.reconciler import Reconciler
    from payments.charges.resolution import ChargeResolutions
    from payments.charges.search import ChargeSearch
    from payments.charges.service import ChargeService
    from payments.charges.settlement import ChargeSettler
    from payments.charges.terminals import TerminalCodes
    from payments.charges.threeds import PageLinks, ThreeDSService
    from payments.charges.timeline import ChargeTimeline
    from payments.charges.transitions import ChargeTransitions
    from payments.charges.use_cases import ChargeUseCases
    from payments.charges.voids import ChargeVoids
    from payments.config import Settings
    from payments.epay.client import EpayClient, EpayCredentials
    from payments.refunds.reconciler import RefundReconciler
    from payments.refunds.service import RefundService
    from payments.shared.events import DomainEvents
    from payments.subscriptions.renewals import Renewals
    from payments.subscriptions.service import Subscriptions

_lock = threading.RLock()
_BUILT: list[Any] = []


def _part[T](builder: Callable[[], T]) -> Callable[[], T]:
    """A part built once per container (`reset` forgets it), under one lock: a part built from
    several threads at once (a reconciler run's) is still built once."""
    built = cache(builder)
    _BUILT.append(built)

    @wraps(builder)
    def once() -> T:
        with _lock:
            return built()

    return once


@_part
def settings() -> Settings:
    """Settings validated from the environment, once."""
    from payments.config import load_settings

    return load_settings(os.environ)


@_part
def _secrets() -> SecretsProvider:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=clients.client("secretsmanager"))


def credentials() -> EpayCredentials:
    """ePay credentials (client id, secret, terminals) from Secrets Manager, cached a few
    minutes per container."""
    from payments.config import SECRET_MAX_AGE_SECONDS, parse_credentials
    from payments.epay.client import EpayCredentials

    secret = _secrets().get(settings().secret_id, max_age=SECRET_MAX_AGE_SECONDS, transform="json")
    return EpayCredentials(*parse_credentials(secret))


@_part
def gateway() -> EpayClient:
    """The ePay client; every HTTP call it makes is timed into EpayLatency (by Operation)."""
    import urllib3

    from payments.aws.telemetry import epay_call
    from payments.epay.client import EpayClient, Timeouts

    config = settings()
    return EpayClient(
        oauth_url=config.oauth_url,
        api_url=config.api_url,
        credentials=credentials,
        scope=config.scope,
        timeouts=Timeouts(connect=config.connect_timeout, read=config.read_timeout),
        http=urllib3.PoolManager(maxsize=clients.POOL_CONNECTIONS, retries=False),
        confirm_path=config.confirm_path,
        on_call=epay_call,
    )


@_part
def store() -> DynamoChargeStore:
    """The DynamoDB charge store."""
    from payments.aws.charge_store import DynamoChargeStore

    client = clients.client("dynamodb", connections=clients.POOL_CONNECTIONS)
    return DynamoChargeStore(
        settings().table_name, client, invoice_suffix_ttl=settings().invoice_window
    )


@_part
def invoice_allocator() -> InvoiceAllocator:
    """Finds free invoice ids per terminal (payments.charges.invoices)."""
    from payments.aws.invoice_space import DynamoInvoiceSpace
    from payments.aws.telemetry import PowertoolsInvoiceTelemetry
    from payments.charges.invoices import InvoiceAllocator

    return InvoiceAllocator(
        DynamoInvoiceSpace(settings().table_name, store().client),
        PowertoolsInvoiceTelemetry(),
        window=settings().invoice_window,
        clock=now,
    )


def links() -> PublicLinks:
    """The public URLs under PUBLIC_BASE_URL; the postLinks under POSTLINK_BASE_URL if set."""
    from payments.charges.links import PublicLinks

    return PublicLinks(settings().public_base_url, settings().postlink_base_url)


@_part
def charge_use_cases() -> ChargeUseCases:
    """The charge writer, settler and service on the real adapters."""
    from payments.aws.telemetry import PowertoolsTelemetry
    from payments.charges.use_cases import ChargeUseCases

    # charge.* events are not published by writers: the table's stream publishes them
    # (functions/charge_events), so a crash after the write cannot lose one.
    return ChargeUseCases.build(
        store=store(),
        gateway=gateway(),
        telemetry=PowertoolsTelemetry(),
        links=links(),
        allocator=invoice_allocator(),
        page_token=page_tokens().issue,
        clock=now,
        cards=card_service(),
    )


def transitions() -> ChargeTransitions:
    """The one writer of charge changes."""
    return charge_use_cases().transitions


def settler() -> ChargeSettler:
    """Settles charges from ePay's answers (every signal goes through it)."""
    return charge_use_cases().settler


def charge_service() -> ChargeService:
    """Create, read and capture charges."""
    return charge_use_cases().service


@_part
def charge_search() -> ChargeSearch:
    """Charges of an account, a subscription or a status (ChargeListIndex)."""
    from payments.charges.search import ChargeSearch

    return ChargeSearch(store())


def voids() -> ChargeVoids:
    """Cancel (void) charges."""
    return charge_use_cases().voids


@_part
def terminals() -> TerminalCodes:
    """Our terminal's names: the credentials' UUID and its code, learned from the status API and
    kept in the table (read by the postLink intake)."""
    from payments.charges.terminals import TerminalCodes

    return TerminalCodes(store(), gateway().terminals)


@_part
def reconciler() -> Reconciler:
    """The reconciler, over the same store, settler and writer."""
    from payments.charges.reconcile_fanout import threads_setting
    from payments.charges.reconciler import Reconciler

    return Reconciler(
        store=store(),
        settler=settler(),
        transitions=transitions(),
        clock=now,
        terminals=terminals(),
        voids=charge_use_cases().voids,
        threads=threads_setting(os.environ),
    )


@_part
def refund_store() -> DynamoRefundStore:
    """Refunds beside their charges, in the same table (and the same client)."""
    from payments.aws.refund_store import DynamoRefundStore

    return DynamoRefundStore(settings().table_name, store())


@_part
def refunds() -> RefundService:
    """Refunds of captured charges (payments.refunds), on the charges' store and writer."""
    from payments.refunds.service import RefundService

    return RefundService(
        store=refund_store(),
        charges=store(),
        transitions=transitions(),
        gateway=gateway(),
        clock=now,
    )


@_part
def refund_reconciler() -> RefundReconciler:
    """Settles PENDING refunds from ePay's status API (the scheduled reconciler runs it)."""
    from payments.refunds.reconciler import RefundReconciler

    return RefundReconciler(
        store=refund_store(),
        charges=store(),
        service=refunds(),
        status=gateway().status,
        clock=now,
    )


@_part
def inbox() -> DynamoInbox:
    """The DynamoDB inbox of postLink notifications (same table, the charge store's client: a
    postLink's cold start makes one DynamoDB client, not two)."""
    from payments.aws.inbox import DynamoInbox

    return DynamoInbox(settings().table_name, store().client)


@_part
def postlink_service() -> PostLinkService:
    """The postLink intake, settling through the charge service."""
    from payments.aws.telemetry import PowertoolsPostLinkTelemetry
    from payments.charges.postlink import PostLinkService

    return PostLinkService(
        inbox=inbox(),
        charges=store(),
        settler=settler(),
        terminals=terminals(),
        telemetry=PowertoolsPostLinkTelemetry(),
        setups=setup_settler(),
    )


@_part
def charge_timeline() -> ChargeTimeline:
    """A charge's history and its invoice's postLinks (GET /charges/{chargeId}/history)."""
    from payments.charges.timeline import ChargeTimeline

    return ChargeTimeline(charges=store(), inbox=inbox())


@_part
def resolutions() -> ChargeResolutions:
    """Operators resolving NEEDS_REVIEW charges, checked against ePay's status API."""
    from payments.charges.resolution import ChargeResolutions

    return ChargeResolutions(charges=store(), gateway=gateway(), transitions=transitions())


@_part
def page_tokens() -> PageTokens:
    """3DS page tokens keyed by a label-derived key of the ePay client secret (never stored)."""
    from payments.charges.page_tokens import PageTokens, derive_key

    return PageTokens(lambda: derive_key(credentials().client_secret))


@_part
def page_links() -> PageLinks:
    """The public URLs of the 3DS step (page with its token, TermUrl)."""
    from payments.charges.threeds import PageLinks

    return PageLinks(page_tokens(), links())


def page_url(charge: Charge) -> str | None:
    """`nextAction.url` of a charge (None unless it is REQUIRES_3DS with a page token)."""
    return page_links().page_url(charge)


@_part
def three_ds_service() -> ThreeDSService:
    """The 3-D Secure page and return, settling through the charge service."""
    from payments.aws.telemetry import PowertoolsTelemetry
    from payments.charges.threeds import ThreeDSService

    return ThreeDSService(
        store=store(),
        gateway=gateway(),
        settler=settler(),
        transitions=transitions(),
        telemetry=PowertoolsTelemetry(),
        links=page_links(),
        allow_loopback_acs=settings().allow_loopback_acs,
    )


@_part
def card_store() -> DynamoCardStore:
    """Saved cards, in the payments table (the same client)."""
    from payments.aws.card_store import DynamoCardStore

    return DynamoCardStore(settings().table_name, store().client)


@_part
def setup_store() -> DynamoSetupStore:
    """Card setups, in the payments table (the same client)."""
    from payments.aws.card_store import DynamoSetupStore

    return DynamoSetupStore(
        settings().table_name, store().client, invoice_suffix_ttl=settings().invoice_window
    )


@_part
def card_service() -> CardService:
    """An account's cards, and the rules charges and subscriptions follow about them. The
    ePay client is built only when a card is listed from ePay or removed."""
    from payments.cards.service import CardService

    return CardService(cards=card_store(), gateway=gateway, clock=now)


@_part
def card_setups() -> CardSetups:
    """Card setup sessions and their page (ePay's widget)."""
    from payments.cards.setups import CardSetups

    return CardSetups(
        store=setup_store(),
        gateway=gateway(),
        allocator=invoice_allocator(),
        links=links(),
        tokens=page_tokens(),
        widget_url=settings().widget_url,
        clock=now,
    )


@_part
def setup_settler() -> SetupSettler:
    """Settles card setups from ePay's status API (postLink, reconciler)."""
    from payments.aws.telemetry import PowertoolsSetupTelemetry
    from payments.cards.settlement import SetupSettler

    return SetupSettler(
        store=setup_store(),
        gateway=gateway(),
        charges=settler(),
        telemetry=PowertoolsSetupTelemetry(),
        clock=now,
    )


@_part
def setup_reconciler() -> SetupReconciler:
    """Expires abandoned card setups and settles opened ones (the scheduled reconciler)."""
    from payments.cards.reconciler import SetupReconciler

    return SetupReconciler(store=setup_store(), setups=setup_settler(), clock=now)


@_part
def reconcile_fanout() -> ReconcileFanOut | None:
    """The scheduled tick's fan-out: one message per due shard on the reconcile queue
    (RECONCILE_QUEUE_URL); None without a queue, when the tick checks everything itself."""
    from payments.aws.reconcile_queue import SqsReconcileQueue
    from payments.charges.reconcile_fanout import DueShards, ReconcileFanOut, UnitKind

    queue_url = os.environ.get("RECONCILE_QUEUE_URL", "")
    if not queue_url:
        return None
    sqs = clients.client("sqs")
    sources: dict[UnitKind, DueShards] = {
        UnitKind.CHARGES: reconciler(),
        UnitKind.REFUNDS: refund_reconciler(),
        UnitKind.SETUPS: setup_reconciler(),
    }
    return ReconcileFanOut(sources=sources, queue=SqsReconcileQueue(sqs, queue_url), clock=now)


def reset() -> None:
    """Forget everything built (tests change the environment between cases)."""
    for built in _BUILT:
        built.cache_clear()
    clients.forget()
    use_clock(utc_now)


# ---------------------------------------------------------------- subscriptions (issue 6)

_clock: list[Callable[[], datetime]] = [utc_now]


def now() -> datetime:
    """The one clock every use case reads (tests move it with `use_clock`)."""
    return _clock[0]()


def use_clock(clock: Callable[[], datetime]) -> None:
    """Replace the clock (tests: a fake one that moves through months in milliseconds)."""
    _clock[0] = clock


@_part
def events() -> DomainEvents:
    """Domain events on the stack's EventBridge bus (EVENT_BUS_NAME; none when empty)."""
    from payments.aws.eventbridge import EventBridgeEvents
    from payments.shared.events import NullEvents

    bus = settings().event_bus_name
    if not bus:
        return NullEvents()
    client = clients.client("events")
    return EventBridgeEvents(client, bus)


@_part
def subscription_store() -> DynamoSubscriptionStore:
    """Subscriptions in the payments table."""
    from payments.aws.subscription_store import DynamoSubscriptionStore

    client = clients.client("dynamodb", connections=clients.DISPATCH_CONNECTIONS)
    return DynamoSubscriptionStore(settings().table_name, client, clock=now)


@_part
def subscriptions() -> Subscriptions:
    """The subscriptions API's use cases."""
    from payments.subscriptions.service import Subscriptions

    # subscription.* events of API changes are published from the table's stream
    # (functions/charge_events), so a crash after the write cannot lose one.
    return Subscriptions(store=subscription_store(), clock=now, cards=card_service())


@_part
def renewals() -> Renewals:
    """Dispatch and renewal, charging through the same ChargeService as POST /charges."""
    from payments.aws.sqs import SqsRenewalQueue
    from payments.subscriptions.policy import load_renewal_policy
    from payments.subscriptions.renewals import Renewals

    queue_url = settings().renewal_queue_url
    sqs = clients.client("sqs", connections=clients.DISPATCH_CONNECTIONS)
    return Renewals(
        store=subscription_store(),
        queue=SqsRenewalQueue(sqs, queue_url),
        charges=charge_service(),
        events=events(),
        policy=load_renewal_policy(os.environ),
        clock=now,
    )
