"""The Python client (clients/python) against the local stack over HTTP: every answer it reads
is a real one (local API Gateway, the real handlers, DynamoDB Local or moto, the ePay simulator).

`PaymentsClient.local` does not sign (the local API does not check SigV4). The client is
installed into the app venv by `make setup`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from epay_payments_client import (
    Conflict,
    Interval,
    NotFound,
    PaymentsClient,
    Unprocessable,
    ValidationFailed,
)

from local.run import TEMPLATE_PATH, LocalStack, start_stack
from local.template import api_routes, load_template

pytestmark = pytest.mark.e2e

CARD_AUTH = "c0000000-0000-4000-8000-000000000001"  # approved (AUTH, captured at once)
CARD_CHARGE = "c0000000-0000-4000-8000-000000000002"
CARD_NO_FUNDS = "c0000000-0000-4000-8000-000000000004"  # declined 484
ACCOUNT = "customer-42"
MISSING_CHARGE = "ch_" + "0" * 32


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStack]:
    stack = start_stack(0)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def client(local_stack: LocalStack) -> Iterator[PaymentsClient]:
    with PaymentsClient.local(local_stack.url, timeout=20.0) as payments:
        yield payments


def test_charge_replay_and_partial_refund(client: PaymentsClient) -> None:
    # Given a key of the merchant's own
    key = f"order-{uuid.uuid4()}"

    # When a charge is created on the approved test card, and sent again with the same key
    charge = client.create_charge(
        amount=Decimal("1500.00"),
        currency="KZT",
        card_id=CARD_AUTH,
        account_id=ACCOUNT,
        description="Order 42",
        idempotency_key=key,
    )
    replay = client.create_charge(
        amount=Decimal("1500.00"),
        currency="KZT",
        card_id=CARD_AUTH,
        account_id=ACCOUNT,
        description="Order 42",
        idempotency_key=key,
    )

    # Then it is captured with exact money, and the replay is the same charge
    assert charge.status == "CAPTURED"
    assert charge.amount == Decimal("1500.00")
    assert isinstance(charge.captured_amount, Decimal)
    assert charge.id.startswith("ch_")
    assert charge.replayed is False
    assert replay.replayed is True
    assert replay.id == charge.id
    assert client.get_charge(charge.id).status == "CAPTURED"

    # And the same key with another body is refused, typed
    with pytest.raises(Unprocessable) as reused:
        client.create_charge(
            amount=Decimal("99.00"),
            currency="KZT",
            card_id=CARD_AUTH,
            account_id=ACCOUNT,
            description="Order 42",
            idempotency_key=key,
        )
    assert reused.value.code == "idempotency_key_reused"

    # When part of it is refunded
    refund = client.create_refund(charge.id, amount=Decimal("500.00"), reason="damaged")

    # Then the refund succeeded and the charge shows it
    assert refund.status == "SUCCEEDED"
    assert refund.amount == Decimal("500.00")
    assert [r.id for r in client.list_refunds(charge.id)] == [refund.id]
    assert client.get_refund(refund.id).charge_id == charge.id
    after = client.get_charge(charge.id)
    assert after.status == "PARTIALLY_REFUNDED"
    assert after.refunded_amount == Decimal("500.00")


def test_a_decline_is_a_declined_charge_not_an_error(client: PaymentsClient) -> None:
    charge = client.create_charge(
        amount=Decimal("250.00"),
        currency="KZT",
        card_id=CARD_NO_FUNDS,
        account_id=ACCOUNT,
        description="Order 43",
    )

    assert charge.status == "DECLINED"
    assert charge.error is not None
    assert (charge.error.code, charge.error.category) == ("484", "soft")


def test_typed_errors_carry_the_apis_code(client: PaymentsClient) -> None:
    with pytest.raises(NotFound) as missing:
        client.get_charge(MISSING_CHARGE)
    assert missing.value.code == "not_found"
    assert missing.value.http_status == 404

    with pytest.raises(ValidationFailed) as invalid:
        client.create_charge(
            amount=Decimal("1.005"),
            currency="KZT",
            card_id=CARD_AUTH,
            account_id=ACCOUNT,
            description="too precise",
        )
    assert invalid.value.code == "validation_error"
    assert "amount" in invalid.value.fields


def test_card_setup_and_cards(client: PaymentsClient) -> None:
    # Given a card setup for the account
    setup = client.create_card_setup(
        account_id=ACCOUNT, back_link="https://merchant.example/cards/done"
    )
    assert setup.status == "PENDING"
    assert setup.url is not None
    assert f"/card-setups/{setup.id}/page?token=" in setup.url
    assert client.get_card_setup(setup.id).id == setup.id

    # When the account's cards are listed against ePay's list
    cards = list(client.iter_cards(ACCOUNT, refresh=True, limit=2))

    # Then the simulator's saved test cards are there, whole ids and masks
    by_id = {card.id: card for card in cards}
    assert CARD_AUTH in by_id
    assert by_id[CARD_AUTH].status == "ACTIVE"
    assert by_id[CARD_AUTH].account_id == ACCOUNT

    # When a card is removed (twice: the second answers the removed card)
    removed = client.remove_card(ACCOUNT, CARD_CHARGE)
    again = client.remove_card(ACCOUNT, CARD_CHARGE)

    # Then it is REMOVED, and charging it is a typed conflict
    assert removed.status == again.status == "REMOVED"
    with pytest.raises(Conflict) as refused:
        client.create_charge(
            amount=Decimal("100.00"),
            currency="KZT",
            card_id=CARD_CHARGE,
            account_id=ACCOUNT,
            description="after removal",
        )
    assert refused.value.code == "card_removed"


def test_subscription_lifecycle(client: PaymentsClient) -> None:
    # (the test cards are saved under ACCOUNT: another account would be card_account_mismatch)
    sub = client.create_subscription(
        account_id=ACCOUNT,
        card_id=CARD_AUTH,
        amount=Decimal("4990.00"),
        currency="KZT",
        description="Monthly plan",
        interval=Interval("month"),
        start_at=datetime.now(UTC) + timedelta(days=30),
    )
    assert sub.status == "ACTIVE"
    assert sub.amount == Decimal("4990.00")

    assert client.pause_subscription(sub.id).status == "PAUSED"
    assert client.resume_subscription(sub.id).status == "ACTIVE"
    changed = client.update_subscription(sub.id, description="Monthly plan, renamed")
    assert changed.description == "Monthly plan, renamed"
    assert sub.id in [s.id for s in client.iter_subscriptions(ACCOUNT, limit=1)]
    assert client.cancel_subscription(sub.id).status == "CANCELLED"
    assert client.get_subscription(sub.id).status == "CANCELLED"


def _has_route(method: str, resource: str) -> bool:
    routes = api_routes(load_template(TEMPLATE_PATH))
    return any(r.method == method and r.resource == resource for r in routes)


@pytest.mark.skipif(
    not _has_route("GET", "/charges"), reason="GET /charges is not in template.yaml yet"
)
def test_search_charges_pages(client: PaymentsClient) -> None:
    # Given three charges of the account, made after `since`
    since = datetime.now(UTC) - timedelta(seconds=1)
    created = [
        client.create_charge(
            amount=Decimal("100.00") + n,
            currency="KZT",
            card_id=CARD_AUTH,
            account_id=ACCOUNT,
            description=f"Order {n}",
        ).id
        for n in range(3)
    ]

    # When they are searched two at a time
    first = client.search_charges(account_id=ACCOUNT, created_from=since, limit=2)
    found = [
        charge.id for charge in client.iter_charges(account_id=ACCOUNT, created_from=since, limit=2)
    ]

    # Then every page was followed, newest first
    assert first.next_cursor is not None
    assert set(created) <= set(found)
    assert [i for i in found if i in created] == created[::-1]
