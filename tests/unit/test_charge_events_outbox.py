"""The charge outbox's pure part: a stream record of a charge item -> at most one charge.* event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from payments.aws.charge_items import charge_to_item
from payments.aws.charge_stream import charge_change_from_stream, subscription_change_from_stream
from payments.aws.subscription_store import subscription_to_item
from payments.charges.events import charge_event_from_change
from payments.charges.model import CaptureMode, Charge, ChargeError, ChargeStatus, ThreeDSData
from payments.shared.events import DomainEvent
from payments.subscriptions.calendar import BillingInterval, Interval
from payments.subscriptions.events import CANCEL_REQUESTED, subscription_event_from_change
from payments.subscriptions.model import Subscription, SubscriptionStatus
from tests.fakes import make_charge

S = ChargeStatus
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CHARGE = make_charge(recurrent=False)
_SERIALIZER = TypeSerializer()


def image(charge: Charge) -> dict[str, Any]:
    """A charge item as the stream carries it (typed attributes)."""
    return {k: _SERIALIZER.serialize(v) for k, v in charge_to_item(charge).items()}


def change(old: Charge | None, new: Charge | None) -> dict[str, Any]:
    record: dict[str, Any] = {"Keys": {"pk": {"S": "CHARGE#ch_1"}, "sk": {"S": "CHARGE"}}}
    if old is not None:
        record["OldImage"] = image(old)
    if new is not None:
        record["NewImage"] = image(new)
    return record


def charge_event_from_stream(
    record: dict[str, Any], page_url: Callable[[Charge], str | None] | None = None
) -> DomainEvent | None:
    """What functions/charge_events does with one record: its change, then the change's event."""
    found = charge_change_from_stream(record)
    if found is None:
        return None
    url = page_url(found.charge) if page_url is not None else None
    return charge_event_from_change(found.previous_status, found.charge, url)


def moved(status: ChargeStatus, **changes: Any) -> Charge:
    return replace(CHARGE, status=status, version=CHARGE.version + 1, **changes)


def test_a_write_that_keeps_the_status_tells_nothing() -> None:
    # Given a charge item rewritten with the same status (e.g. a reconciler check)
    later = replace(CHARGE, updated_at=NOW + timedelta(minutes=2))
    # Then there is no event
    assert charge_event_from_stream(change(CHARGE, later)) is None
    # Given a CAPTURED charge rewritten at a later version, still CAPTURED / Then no event either
    captured = moved(S.CAPTURED)
    assert charge_event_from_stream(change(captured, replace(captured, version=9))) is None


def test_new_items_removals_and_other_items() -> None:
    # Given a new charge in a status we do not tell, a removed charge, and a history item
    # Then none of them is an event
    assert charge_event_from_stream(change(None, CHARGE)) is None
    assert charge_event_from_stream(change(moved(S.CAPTURED), None)) is None
    history = change(None, CHARGE)
    history["NewImage"]["sk"] = {"S": "HISTORY#0002"}
    assert charge_event_from_stream(history) is None


def test_captured_is_charge_succeeded_with_a_deterministic_id() -> None:
    # Given a charge moving to CAPTURED / When its stream record is read
    event = charge_event_from_stream(change(CHARGE, moved(S.CAPTURED)))
    # Then it is charge.succeeded, its id derived from the charge, with the masked card
    assert event is not None
    assert (event.id, event.type) == ("charge.succeeded:ch_1:CAPTURED", "charge.succeeded")
    assert event.data["status"] == "CAPTURED"
    assert event.data["amount"] == Decimal("1500.50")
    assert event.data["cardId"] == "****0001"
    # And the same record again (a redelivery) is the same event
    again = charge_event_from_stream(change(CHARGE, moved(S.CAPTURED)))
    assert again == event


def test_held_then_captured_under_manual_capture_are_two_facts_with_two_ids() -> None:
    # Given a manual-capture charge that becomes AUTHORIZED, then CAPTURED by the merchant
    manual = replace(CHARGE, capture=CaptureMode.MANUAL)
    held = replace(manual, status=S.AUTHORIZED, version=2)
    captured = replace(held, status=S.CAPTURED, captured_amount=held.amount, version=3)
    # When both writes reach the outbox, and the second is delivered twice
    first = charge_event_from_stream(change(manual, held))
    second = charge_event_from_stream(change(held, captured))
    again = charge_event_from_stream(change(held, captured))
    # Then both are charge.succeeded, with different ids: a consumer deduplicating on the id keeps
    # the capture; the redelivery repeats its id
    assert first is not None
    assert second is not None
    assert again is not None
    assert first.type == second.type == "charge.succeeded"
    assert first.id != second.id
    assert again.id == second.id


def test_a_new_item_already_settled_is_told() -> None:
    # Given a charge whose first write is already DECLINED / Then charge.failed is told
    event = charge_event_from_stream(change(None, moved(S.DECLINED)))
    assert event is not None
    assert event.type == "charge.failed"


def test_authorized_is_succeeded_only_under_manual_capture() -> None:
    # Given a manual-capture charge moving to AUTHORIZED / Then it is charge.succeeded
    manual = replace(CHARGE, capture=CaptureMode.MANUAL)
    event = charge_event_from_stream(change(manual, replace(manual, status=S.AUTHORIZED)))
    assert event is not None
    assert event.type == "charge.succeeded"
    # Given an auto-capture charge moving to AUTHORIZED (capture still to come) / Then nothing
    assert charge_event_from_stream(change(CHARGE, moved(S.AUTHORIZED))) is None


@pytest.mark.parametrize("status", [S.DECLINED, S.FAILED, S.EXPIRED])
def test_declined_failed_and_expired_are_charge_failed(status: ChargeStatus) -> None:
    # Given a charge ending unpaid with a soft decline / When its stream record is read
    error = ChargeError(code="card_declined", message="Declined", category="soft")
    event = charge_event_from_stream(change(CHARGE, moved(status, error=error)))
    # Then it is charge.failed with the final status and the decline's code, message and category
    assert event is not None
    assert (event.id, event.type) == (f"charge.failed:ch_1:{status.value}", "charge.failed")
    assert event.data["status"] == status.value
    assert event.data["error"] == {
        "code": "card_declined",
        "message": "Declined",
        "category": "soft",
    }


def test_requires_3ds_is_requires_action_with_the_page_url() -> None:
    # Given a charge moving to REQUIRES_3DS with a page nonce
    three_ds = ThreeDSData(
        pa_req="pareq",
        md="md",
        action="https://acs.example/3ds",
        access_token="tok",
        token_expires_at=NOW + timedelta(minutes=20),
        page_nonce="nonce-1",
        page_token_digest="digest",
    )
    new = moved(S.REQUIRES_3DS, three_ds=three_ds)
    seen: list[Charge] = []

    def page_url(charge: Charge) -> str:
        seen.append(charge)
        return f"https://pay.example/charges/{charge.id}/3ds?token=t"

    # When its stream record is read
    event = charge_event_from_stream(change(CHARGE, new), page_url)
    # Then it is charge.requires_action, redirecting the customer to our 3DS page
    assert event is not None
    assert (event.id, event.type) == (
        "charge.requires_action:ch_1:REQUIRES_3DS",
        "charge.requires_action",
    )
    assert event.data["nextAction"] == {
        "type": "redirect",
        "url": "https://pay.example/charges/ch_1/3ds?token=t",
    }
    # And the page URL is computed from the stored charge (its nonce survives the round trip)
    assert seen[0].three_ds is not None
    assert seen[0].three_ds.page_nonce == "nonce-1"


def test_the_use_case_function_compares_statuses() -> None:
    # Given the previous status equals the new one / Then there is no event
    assert charge_event_from_change("CAPTURED", moved(S.CAPTURED)) is None
    # Given PROCESSING moving to CAPTURED / Then charge.succeeded
    event = charge_event_from_change("PROCESSING", moved(S.CAPTURED))
    assert event is not None
    assert event.type == "charge.succeeded"


def test_a_merchant_cancel_is_told_once_from_the_subscription_write() -> None:
    # Given a subscription item as the stream carries it, before and after the API's cancel
    active = make_subscription()
    cancelled = replace(
        active,
        status=SubscriptionStatus.CANCELLED,
        canceled_at=NOW,
        cancel_reason=CANCEL_REQUESTED,
        version=active.version + 1,
    )
    record = {
        "Keys": {"pk": {"S": f"SUB#{active.id}"}, "sk": {"S": "SUB"}},
        "OldImage": sub_image(active),
        "NewImage": sub_image(cancelled),
    }
    # When the outbox reads the change
    change = subscription_change_from_stream(record)
    assert change is not None
    event = subscription_event_from_change(change.previous_status, change.subscription)
    # Then it is subscription.canceled, with the id every redelivery repeats
    assert event is not None
    assert (event.id, event.type) == (f"subscription.canceled:{active.id}", "subscription.canceled")
    assert event.data["reason"] == "requested"
    assert event.occurred_at == NOW
    # And a write that keeps it cancelled, or a cancel by the renewal worker (told from its own
    # claim), tells nothing here
    assert subscription_event_from_change("CANCELLED", cancelled) is None
    unpaid = replace(cancelled, cancel_reason="unpaid")
    assert subscription_event_from_change("PAST_DUE", unpaid) is None
    # And a charge item is not mistaken for a subscription
    assert subscription_change_from_stream(change_record(CHARGE)) is None


def make_subscription() -> Subscription:
    return Subscription(
        id="sub_" + "0" * 32,
        account_id="acc-1",
        card_id="c0000000-0000-4000-8000-000000000001",
        amount=Decimal("990.00"),
        currency="KZT",
        description="Monthly plan",
        interval=BillingInterval(Interval.MONTH, 1),
        anchor=NOW,
        status=SubscriptionStatus.ACTIVE,
        idempotency_key="sub-key",
        request_hash="h",
        created_at=NOW,
        updated_at=NOW,
    )


def sub_image(sub: Subscription) -> dict[str, Any]:
    return {
        k: _SERIALIZER.serialize(v) for k, v in subscription_to_item(sub).items() if v is not None
    }


def change_record(charge: Charge) -> dict[str, Any]:
    return {"Keys": {}, "NewImage": image(charge)}
