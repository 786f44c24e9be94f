"""Refunds and voids through the charges function: DynamoDB Local, the simulator's ledger."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from tests.integration.conftest import Stack, capture_event, create_event, load_event

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
    event = load_event("charges/capture-charge.json")
    event["httpMethod"] = method
    event["resource"] = resource
    event["path"] = path
    event["pathParameters"] = params
    event["requestContext"]["resourcePath"] = resource
    event["requestContext"]["httpMethod"] = method
    event["requestContext"]["path"] = f"/v1{path}"
    event["body"] = None if body is None else json.dumps(body)
    headers = {k: v for k, v in event["headers"].items() if k != "Idempotency-Key"}
    if key is not None:
        headers["Idempotency-Key"] = key
    event["headers"] = headers
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
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
    # Then exactly one operation moved the money, and our state is ePay's
    assert {"CANCEL": "CANCELLED", "CHARGE": "CAPTURED"}[ledger] == state
    assert len(stack.simulator.requests("cancel")) + len(stack.simulator.requests("charge")) >= 1
    assert final.status in (200, 409)


def test_cancelling_during_3ds_stops_the_charge_and_spends_its_page(stack: Stack) -> None:
    waiting = stack.invoke(create_event({**BODY, "cardId": THREE_DS}, "3ds")).body
    assert waiting["status"] == "REQUIRES_3DS"
    cancelled = stack.invoke(cancel_event(waiting["id"]))
    assert cancelled.body["status"] == "CANCELLED"
    assert cancelled.body["nextAction"] is None
    items = [i for i in stack.charge_items() if i["id"]["S"] == waiting["id"]]
    three_ds = items[0].get("threeDS", {}).get("M", {})
    # The page token's nonce, PaReq and ePay's token are gone: no page or TermUrl can go on
    assert not {"pageNonce", "paReq", "accessToken"} & set(three_ds)
    # And the reconciler will look at ePay in case it authorised the charge meanwhile
    assert items[0]["voidPending"]["BOOL"] is True
    assert "nextCheckAt" in items[0]
