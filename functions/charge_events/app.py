"""Domain events from the table's stream (the outbox): each charge status change -> its charge.*
event, each refund outcome -> charge.refund.*, each subscription change the API made -> its
subscription.* event, on the bus. The events of the whole batch are published together (ten to a
PutEvents call); a record whose events could not be built or published fails alone
(ReportBatchItemFailures), the records after it are still published, Lambda retries from it, and
the deterministic ids make the repeats dedupable (payments.aws.batch.publish_stream).

Each kind's events module (and its domain model) is imported on the first record of that kind, so
a batch of charge changes never loads subscriptions, refunds or cards (cold start:
docs/decisions.md, 2026-12-06).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from payments import bootstrap
from payments.aws.batch import BatchResponse, Record, publish_stream
from payments.aws.charge_stream import (
    card_change_from_stream,
    charge_change_from_stream,
    refund_change_from_stream,
    subscription_change_from_stream,
)
from payments.observability import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from payments.cards.model import Card
    from payments.shared.events import DomainEvent


def _events_of(change: Mapping[str, Any]) -> list[DomainEvent]:
    """The events one stored change tells (none, one, or a removed card's several)."""
    charge = charge_change_from_stream(change)
    if charge is not None:
        from payments.charges.events import charge_event_from_change

        if charge.previous_status != charge.charge.status.value:
            # A card saved before the service existed is recorded once a charge on it succeeds.
            bootstrap.card_service().remember(charge.charge)
        page_url = bootstrap.page_url(charge.charge)
        return _some(charge_event_from_change(charge.previous_status, charge.charge, page_url))
    sub = subscription_change_from_stream(change)
    if sub is not None:
        from payments.subscriptions.events import subscription_event_from_change

        return _some(subscription_event_from_change(sub.previous_status, sub.subscription))
    refund = refund_change_from_stream(change)
    if refund is not None:
        from payments.refunds.events import refund_event_from_change

        return _some(refund_event_from_change(refund.previous_status, refund.refund))
    card = card_change_from_stream(change)
    if card is not None:
        from payments.cards.events import card_event_from_change, payment_method_removed
        from payments.cards.model import CardStatus

        event = card_event_from_change(card.previous_status, card.card)
        if event is None or card.card.status is not CardStatus.REMOVED:
            return _some(event)
        return [event, *payment_method_removed(card.card, _subscriptions_on(card.card))]
    return []


def _some(event: DomainEvent | None) -> list[DomainEvent]:
    return [] if event is None else [event]


def _subscriptions_on(card: Card) -> list[str]:
    """The account's subscriptions still charging a removed card (not cancelled)."""
    return bootstrap.subscriptions().charging_card(card.account_id, card.id)


def _record_events(record: Record) -> list[DomainEvent]:
    """The events of one stream record (its item change)."""
    return _events_of(record.get("dynamodb") or {})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], _context: LambdaContext) -> BatchResponse:
    """DynamoDB stream entry point with partial batch failures (ReportBatchItemFailures). A batch
    whose every record failed is answered the same way, so Lambda bisects and retries from the
    first failed record rather than treating it as a crash.

    One "events published" line per invocation lists the ids of the events it published
    (`<type>:<subject>...`: the type is the id's first part), rather than a line per event; a
    record that failed has its own error lines."""
    answer, published = publish_stream(event, _record_events, bootstrap.events)
    if published:
        logger.info("events published", extra={"event_ids": published})
    return answer
