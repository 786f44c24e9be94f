"""Refunds and voids through the charges function: DynamoDB Local, the simulator's ledger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from local.epay_sim import TEST_CLIENT_SECRET
from payments import bootstrap
from payments.shared.clock import utc_now
from tests.integration.conftest import (
    EVENTS,
    Context,
    Stack,
    capture_event,
    create_event,
    item_charge_id,
    load_function,
    merchant_event,
)

APPROVE = "c0000000-0000-4000-8000-000000000001"
THREE_DS = "c0000000-0000-4000-8000-000000000003"
BODY: dict[str, Any] = {
    "amount": 1500.5,
    "currency": "KZT",
    "cardId": APPROVE,
    "accountId": "customer-42",
    "description": "Order 42",
}


def _event(
    method: str, path: str, resource: str, params: dict[str, str], body: Any, key: str | None
) -> dict[str, Any]:
    event = merchant_event(method, resource, body=body, key=key, **params)
    assert event["rawPath"] == path
    return event


def refund_event(charge_id: str, body: Any = None, key: str | None = "r-1") -> dict[str, Any]:
    return _event(
        "POST",
        f"/charges/{charge_id}/refunds",
        "/charges/{chargeId}/refunds",
        {"chargeId": charge_id},
        body,
        key,
    )


def list_event(charge_id: str) -> dict[str, Any]:
    return _event(
        "GET",
        f"/charges/{charge_id}/refunds",
        "/charges/{chargeId}/refunds",
        {"chargeId": charge_id},
        None,
        None,
    )


def get_refund_event(refund_id: str) -> dict[str, Any]:
    return _event(
        "GET", f"/refunds/{refund_id}", "/refunds/{refundId}", {"refundId": refund_id}, None, None
    )


def cancel_event(charge_id: str, key: str | None = "c-1") -> dict[str, Any]:
    return _event(
        "POST",
        f"/charges/{charge_id}/cancel",
        "/charges/{chargeId}/cancel",
        {"chargeId": charge_id},
        None,
        key,
    )


def captured(stack: Stack, key: str = "order-1", **changes: Any) -> dict[str, Any]:
    answer = stack.invoke(create_event({**BODY, **changes}, key))
    assert answer.body["status"] == "CAPTURED", answer.raw
    return dict(answer.body)


def test_partial_then_full_refund_moves_the_charge_and_matches_the_ledger(stack: Stack) -> None:
    # Given a captured charge of 1500.50
    charge = captured(stack)
    # When 500 is refunded
    first = stack.invoke(refund_event(charge["id"], {"amount": 500, "reason": "damaged"}, "r-1"))
    # Then the refund succeeded, named by its id at ePay, and the charge is partly refunded
    assert first.status == 201, first.raw
    assert first.body["status"] == "SUCCEEDED"
    assert first.body["amount"] == 500
    assert first.body["reason"] == "damaged"
    assert first.headers["location"] == f"/refunds/{first.body['id']}"
    assert first.body["id"].startswith("re_")
    entry = stack.simulator.ledger[charge["invoiceId"]]
    assert [(r.amount, r.external_id) for r in entry.refunds] == [(Decimal(500), first.body["id"])]
    after = stack.invoke(create_event({**BODY}, "order-1")).body  # the replay reads it
    assert (after["status"], after["refundedAmount"]) == ("PARTIALLY_REFUNDED", 500)
    # When the rest is refunded (no amount) / Then the charge is REFUNDED and ePay agrees
    rest = stack.invoke(refund_event(charge["id"], None, "r-2"))
    assert (rest.status, rest.body["amount"], rest.body["status"]) == (201, 1000.5, "SUCCEEDED")
    entry = stack.simulator.ledger[charge["invoiceId"]]
    assert entry.refunded_amount == Decimal("1500.50")
    assert entry.status_name == "REFUND"
    # And the charge's refunds list both, oldest first; each reads alone
    listed = stack.invoke(list_event(charge["id"])).body["data"]
    assert [r["id"] for r in listed] == [first.body["id"], rest.body["id"]]
    one = stack.invoke(get_refund_event(first.body["id"]))
    assert (one.status, one.body["amount"]) == (200, 500)
    # And a replay of a key answers the same refund without calling ePay again
    calls = len(stack.simulator.requests("refund"))
    again = stack.invoke(refund_event(charge["id"], {"amount": 500, "reason": "damaged"}, "r-1"))
    assert (again.status, again.headers["idempotent-replayed"]) == (200, "true")
    assert again.body["id"] == first.body["id"]
    different = stack.invoke(refund_event(charge["id"], {"amount": 400}, "r-1"))
    assert different.status == 422
    assert len(stack.simulator.requests("refund")) == calls


def test_rules_are_checked_before_anything_is_written_or_sent(stack: Stack) -> None:
    charge = captured(stack)
    items = len(stack.items())
    cases = [
        ({"amount": 5}, 400, "validation_error"),  # under ePay's 10 tenge
        ({"amount": 10.005}, 400, "validation_error"),  # three decimals
        ({"amount": -1}, 400, "validation_error"),
        ({"amount": "10"}, 400, "validation_error"),
        ({"amount": 2000}, 409, "amount_not_refundable"),  # more than captured
        ({"amount": 10, "metadata": {"k": 1}}, 400, "validation_error"),
        ({"amount": 10, "extra": True}, 400, "validation_error"),
    ]
    for index, (body, status, code) in enumerate(cases):
        answer = stack.invoke(refund_event(charge["id"], body, f"bad-{index}"))
        assert (answer.status, answer.body["error"]["code"]) == (status, code), body
    # A missing key, an unknown charge, a charge not captured
    assert stack.invoke(refund_event(charge["id"], {"amount": 10}, None)).status == 400
    assert stack.invoke(refund_event("ch_" + "0" * 32, {"amount": 10})).status == 404
    held = stack.invoke(create_event({**BODY, "capture": "manual"}, "held")).body
    not_yet = stack.invoke(refund_event(held["id"], {"amount": 10}, "held-r"))
    assert (not_yet.status, not_yet.body["error"]["code"]) == (409, "invalid_state")
    # Then nothing was sent to ePay, and only the held charge's own items were written
    assert stack.simulator.requests("refund") == []
    assert all(
        i["sk"]["S"] != "REFUND" and not i["sk"]["S"].startswith("REFUND#") for i in stack.items()
    )
    assert len(stack.items()) > items


def test_twenty_racing_refunds_never_reserve_more_than_was_captured(stack: Stack) -> None:
    # Given a captured charge of 1500.50 and 20 merchants' requests of 100 each, all at once
    charge = captured(stack)

    def refund(n: int) -> int:
        return stack.invoke(refund_event(charge["id"], {"amount": 100}, f"race-{n}")).status

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(refund, range(20)))
    # Then 15 fit and succeeded, the other 5 were refused before ePay heard of them
    assert sorted(statuses) == [201] * 15 + [409] * 5
    entry = stack.simulator.ledger[charge["invoiceId"]]
    assert entry.refunded_amount == Decimal(1500)
    assert len(stack.simulator.requests("refund")) == 15
    assert len({r.external_id for r in entry.refunds}) == 15
    stored = stack.invoke(create_event({**BODY}, "order-1")).body
    assert stored["refundedAmount"] == 1500


def test_void_of_a_held_charge_releases_it_once(stack: Stack) -> None:
    # Given a held (manual capture) charge
    held = stack.invoke(create_event({**BODY, "capture": "manual"}, "held")).body
    assert held["status"] == "AUTHORIZED"
    # When it is cancelled (twice) / Then ePay released it once and the charge is CANCELLED
    first = stack.invoke(cancel_event(held["id"], "c-1"))
    again = stack.invoke(cancel_event(held["id"], "c-2"))
    assert (first.status, first.body["status"]) == (200, "CANCELLED")
    assert (again.status, again.body["status"]) == (200, "CANCELLED")
    assert stack.simulator.ledger[held["invoiceId"]].status_name == "CANCEL"
    assert len(stack.simulator.requests("cancel")) == 1
    # And it can no longer be captured
    assert stack.invoke(capture_event(held["id"])).status == 409
    # And a captured charge cannot be cancelled: it is refunded instead
    taken = captured(stack, "taken")
    refused = stack.invoke(cancel_event(taken["id"], "c-3"))
    assert refused.status == 409
    assert "refund" in refused.body["error"]["message"]


def test_void_racing_captures_ends_in_one_state_that_matches_epay(stack: Stack) -> None:
    held = stack.invoke(create_event({**BODY, "capture": "manual"}, "held")).body

    def act(n: int) -> int:
        event = cancel_event(held["id"], f"c-{n}") if n % 2 else capture_event(held["id"])
        return stack.invoke(event).status

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(act, range(10)))
    final = stack.invoke(cancel_event(held["id"], "c-final"))
    ledger = stack.simulator.ledger[held["invoiceId"]].status_name
    state = stack.invoke(create_event({**BODY, "capture": "manual"}, "held")).body["status"]
    # Then exactly one operation moved the money at ePay, and our state is ePay's
    assert {"CANCEL": "CANCELLED", "CHARGE": "CAPTURED"}[ledger] == state
    answered = stack.simulator.requests("cancel") + stack.simulator.requests("charge")
    assert [e.status for e in answered].count(200) == 1
    # And a later cancel agrees with that state
    assert final.status == (200 if state == "CANCELLED" else 409)


def test_cancelling_during_3ds_stops_the_charge_and_spends_its_page(stack: Stack) -> None:
    waiting = stack.invoke(create_event({**BODY, "cardId": THREE_DS}, "3ds")).body
    assert waiting["status"] == "REQUIRES_3DS"
    cancelled = stack.invoke(cancel_event(waiting["id"]))
    assert cancelled.body["status"] == "CANCELLED"
    assert cancelled.body["nextAction"] is None
    items = [i for i in stack.charge_items() if item_charge_id(i) == waiting["id"]]
    three_ds = items[0].get("threeDS", {}).get("M", {})
    # The page token's nonce, PaReq and ePay's token are gone: no page or TermUrl can go on
    assert not {"pageNonce", "paReq", "accessToken"} & set(three_ds)
    # And the reconciler will look at ePay in case it authorised the charge meanwhile
    assert items[0]["voidPending"]["BOOL"] is True
    assert "nextCheckAt" in items[0]


# ------------------------------------------------------------------ lost answers and the reconciler


class Clock:
    """The functions' clock (bootstrap.use_clock), moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def reconcile(stack: Stack, clock: Clock, after: timedelta) -> dict[str, Any]:
    """Move the clock, then run the scheduled reconciler once."""
    clock.now += after
    event = json.loads((EVENTS / "reconciler/scheduled.json").read_text())
    summary: dict[str, Any] = load_function("reconciler").lambda_handler(event, Context(300))
    return summary


def refund_item(stack: Stack, charge_id: str, refund_id: str) -> dict[str, Any]:
    key = {"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": f"REFUND#{refund_id}"}}
    return dict(
        stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True)["Item"]
    )


def charge_record(stack: Stack, charge_id: str) -> dict[str, Any]:
    key = {"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}}
    return dict(
        stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True)["Item"]
    )


@pytest.fixture
def clock(stack: Stack) -> Iterator[Clock]:
    moved = Clock()
    bootstrap.use_clock(moved)
    yield moved
    bootstrap.use_clock(utc_now)


def test_a_refund_whose_answer_was_lost_is_settled_from_the_status_api(
    stack: Stack, clock: Clock
) -> None:
    # Given ePay made a refund but its answer broke on the way back
    charge = captured(stack)
    stack.simulator.inject("refund", "500_after_commit")
    lost = stack.invoke(refund_event(charge["id"], {"amount": 300}, "lost"))
    # Then it is PENDING, its amount still reserved, and never sent again
    assert (lost.status, lost.body["status"]) == (201, "PENDING")
    assert charge_record(stack, charge["id"])["refundReserved"]["N"] == "300"
    # When the reconciler runs / Then ePay's returned total shows it: SUCCEEDED, released
    summary = reconcile(stack, clock, timedelta(minutes=2))
    assert summary["refunds"] == 1
    done = stack.invoke(get_refund_event(lost.body["id"])).body
    assert done["status"] == "SUCCEEDED"
    record = charge_record(stack, charge["id"])
    assert record["refundedAmount"]["N"] == "300"
    assert "refundReserved" not in record
    assert record["status"]["S"] == "PARTIALLY_REFUNDED"
    assert len(stack.simulator.requests("refund")) == 1
    assert "nextCheckAt" not in refund_item(stack, charge["id"], lost.body["id"])


def test_a_refund_epay_never_made_fails_and_releases_its_reservation(
    stack: Stack, clock: Clock
) -> None:
    # Given a refund whose request failed at ePay before anything was committed (a 500)
    charge = captured(stack)
    stack.simulator.inject("refund", "500_before_commit")
    lost = stack.invoke(refund_event(charge["id"], {"amount": 300}, "lost")).body
    assert lost["status"] == "PENDING"
    # When the reconciler checks soon / Then it waits: ePay may still show it
    reconcile(stack, clock, timedelta(minutes=2))
    assert stack.invoke(get_refund_event(lost["id"])).body["status"] == "PENDING"
    # When ePay still shows nothing an hour on / Then it FAILED and the money is refundable again
    reconcile(stack, clock, timedelta(hours=2))
    failed = stack.invoke(get_refund_event(lost["id"])).body
    assert (failed["status"], failed["error"]["code"]) == ("FAILED", "not_at_epay")
    assert "refundReserved" not in charge_record(stack, charge["id"])
    again = stack.invoke(refund_event(charge["id"], {"amount": 1500.5}, "again"))
    assert again.body["status"] == "SUCCEEDED"


def test_when_the_status_cannot_say_which_refund_went_through_a_person_decides(
    stack: Stack, clock: Clock
) -> None:
    # Given two refunds of 50 whose answers were both lost, only one of them made at ePay
    charge = captured(stack)
    stack.simulator.inject("refund", "500_after_commit")
    one = stack.invoke(refund_event(charge["id"], {"amount": 50}, "one")).body
    stack.simulator.inject("refund", "500_before_commit")
    two = stack.invoke(refund_event(charge["id"], {"amount": 50}, "two")).body
    # When the reconciler reads ePay's total (50 returned)
    reconcile(stack, clock, timedelta(minutes=2))
    # Then neither is guessed: both go to NEEDS_REVIEW with their amounts still reserved
    statuses = {stack.invoke(get_refund_event(r["id"])).body["status"] for r in (one, two)}
    assert statuses == {"NEEDS_REVIEW"}
    assert charge_record(stack, charge["id"])["refundReserved"]["N"] == "100"


def test_refund_and_void_logs_carry_no_secret_token_or_card_id(
    stack: Stack, captured_logs: Any
) -> None:
    # Given refunds (made, refused, lost) and voids (held, during 3-D Secure, lost)
    charge = captured(stack)
    stack.invoke(refund_event(charge["id"], {"amount": 100}, "l-1"))
    stack.simulator.inject("refund", "500_after_commit")
    stack.invoke(refund_event(charge["id"], {"amount": 100}, "l-2"))
    stack.invoke(refund_event(charge["id"], {"amount": 99999}, "l-3"))
    held = stack.invoke(create_event({**BODY, "capture": "manual"}, "held")).body
    stack.simulator.inject("cancel", "500_after_commit")
    stack.invoke(cancel_event(held["id"], "l-4"))
    waiting = stack.invoke(create_event({**BODY, "cardId": THREE_DS}, "3ds")).body
    stack.invoke(cancel_event(waiting["id"], "l-5"))
    logs = captured_logs.getvalue()
    # Then the logs tell what happened, and no secret reached them
    assert "CANCELLED" in logs
    secrets = {TEST_CLIENT_SECRET, APPROVE, THREE_DS}
    for entry in stack.simulator.journal:
        if entry.form and "secret_hash" in entry.form:
            secrets.add(entry.form["secret_hash"])
        if "authorization" in entry.headers:
            secrets.add(entry.headers["authorization"].removeprefix("Bearer "))
    assert len(secrets) >= 6
    assert [s for s in secrets if s in logs] == []
