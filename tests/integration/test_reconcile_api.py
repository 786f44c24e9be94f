"""The reconciler's two entry points: the EventBridge schedule and POST /charges/{id}/reconcile."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import (
    EVENTS,
    Context,
    Stack,
    create_event,
    load_function,
    merchant_event,
)

BODY: dict[str, Any] = {
    "amount": 250,
    "currency": "KZT",
    "cardId": "c0000000-0000-4000-8000-000000000001",
    "accountId": "customer-7",
    "description": "Order 7",
}


def reconcile_event(charge_id: str) -> dict[str, Any]:
    return merchant_event("POST", "/charges/{chargeId}/reconcile", chargeId=charge_id)


def test_on_demand_reconcile_settles_an_unknown_charge(stack: Stack) -> None:
    # Given a charge whose auth answer was lost after ePay authorised it
    stack.simulator.inject("auth", "500_after_commit")
    created = stack.invoke(create_event(BODY, "rec-1")).body
    assert created["status"] == "UNKNOWN"
    # When the merchant asks for a check now
    answer = stack.invoke(reconcile_event(created["id"]))
    # Then the status API settled it (and auto capture ran), with no second auth
    assert answer.status == 200
    assert answer.body["status"] == "CAPTURED"
    assert answer.body["epay"]["reference"]
    assert stack.simulator.ledger[created["invoiceId"]].status_name == "CHARGE"
    assert len(stack.auths()) == 1
    # And asking again changes nothing
    again = stack.invoke(reconcile_event(created["id"]))
    assert again.body["status"] == "CAPTURED"
    assert again.body["updatedAt"] == answer.body["updatedAt"]


def test_on_demand_reconcile_of_a_missing_charge_is_404(stack: Stack) -> None:
    assert stack.invoke(reconcile_event("ch_missing")).status == 404


def test_scheduled_run_settles_due_charges(stack: Stack) -> None:
    # Given an UNKNOWN charge whose first check is due (its time moved into the past)
    stack.simulator.inject("auth", "broken_body")
    created = stack.invoke(create_event(BODY, "rec-2")).body
    assert created["status"] == "UNKNOWN"
    key = {"pk": {"S": f"CHARGE#{created['id']}"}, "sk": {"S": "CHARGE"}}
    stack.dynamodb.update_item(
        TableName=stack.table,
        Key=key,
        UpdateExpression="SET nextCheckAt = :past",
        ExpressionAttributeValues={":past": {"S": "2000-01-01T00:00:00.000Z"}},
    )
    # When EventBridge's scheduled event invokes the reconciler
    event = json.loads((EVENTS / "reconciler/scheduled.json").read_text())
    summary = load_function("reconciler").lambda_handler(event, Context(300))
    # Then the charge is settled and no longer due
    assert summary["settled"] == 1
    item = stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True)["Item"]
    assert item["status"]["S"] == "CAPTURED"
    assert "nextCheckAt" not in item
    assert "dueShard" not in item
