"""Several terminals: the secret's `terminals` list, routing by purpose, a charge's later calls on
its own terminal, postLink checked against the charge's terminal, and a full invoice space
answered 503 before ePay hears anything (charges function, postLink function, DynamoDB Local,
the simulator with two terminals)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.epay_sim import (
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    TEST_TERMINAL2_CODE,
    TEST_TERMINAL2_ID,
    TEST_TERMINAL_CODE,
    TEST_TERMINAL_ID,
    Terminal,
)
from payments import bootstrap
from payments.charges.invoices import SHARDS
from tests.integration.conftest import (
    Stack,
    aws_client,
    capture_event,
    create_event,
    load_function,
)
from tests.integration.test_postlink import PostLinkStack, Receiver
from tests.integration.test_reconcile_api import reconcile_event

APPROVE = "c0000000-0000-4000-8000-000000000001"
THREE_DS = "c0000000-0000-4000-8000-000000000003"
CUSTOMER = {"amount": 500, "currency": "KZT", "cardId": THREE_DS, "accountId": "c-1",
            "description": "Order 1", "recurrent": False}  # fmt: skip
RENEWAL = {"amount": 700, "currency": "KZT", "cardId": THREE_DS, "accountId": "c-1",
           "description": "Plan, December", "recurrent": True}  # fmt: skip
SECRET = {
    "client_id": TEST_CLIENT_ID,
    "client_secret": TEST_CLIENT_SECRET,
    "terminals": [
        {"id": TEST_TERMINAL_ID, "purpose": ["cit", "setup"]},
        {"id": TEST_TERMINAL2_ID, "purpose": ["mit"]},
    ],
}


@pytest.fixture
def two(stack: Stack, moto_endpoint: str) -> Iterator[Stack]:
    """The stack with the secret's new shape: a 3-D Secure terminal for customers, one without
    3-D Secure for merchant-initiated charges (as banks set them up)."""
    secrets = aws_client("secretsmanager", moto_endpoint)
    assert stack.resource_names is not None
    secrets.put_secret_value(
        SecretId=stack.resource_names["EpayCredentialsSecret"], SecretString=json.dumps(SECRET)
    )
    stack.simulator.terminals = [Terminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE, three_ds=False)]
    bootstrap.reset()
    yield stack
    stack.simulator.terminals = []


def charge_item(stack: Stack, charge_id: str) -> dict[str, Any]:
    key = {"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}}
    return dict(stack.dynamodb.get_item(TableName=stack.table, Key=key)["Item"])


def test_charges_are_routed_by_purpose_and_record_their_terminal(two: Stack) -> None:
    # When a customer-present charge and a merchant-initiated one use the 3-D Secure test card
    customer = two.invoke(create_event(CUSTOMER, "cit-1")).body
    renewal = two.invoke(create_event(RENEWAL, "mit-1")).body
    # Then the customer's went to the 3-D Secure terminal and waits for the customer
    assert customer["status"] == "REQUIRES_3DS"
    assert charge_item(two, customer["id"])["terminalId"]["S"] == TEST_TERMINAL_ID
    assert two.simulator.ledger_entry(customer["invoiceId"], TEST_TERMINAL_ID) is not None
    # And the renewal went to the recurring terminal, which asks for no 3-D Secure
    assert renewal["status"] == "CAPTURED"
    assert charge_item(two, renewal["id"])["terminalId"]["S"] == TEST_TERMINAL2_ID
    entry = two.simulator.ledger_entry(renewal["invoiceId"], TEST_TERMINAL2_ID)
    assert entry is not None
    assert entry.status_name == "CHARGE"
    # And every auth named the terminal its token was bound to
    assert [a.json["terminalId"] for a in two.auths()] == [TEST_TERMINAL_ID, TEST_TERMINAL2_ID]


def test_capture_and_reconcile_use_the_charges_own_terminal(two: Stack) -> None:
    # Given a held merchant-initiated charge on the second terminal
    held = two.invoke(create_event({**RENEWAL, "cardId": APPROVE, "capture": "manual"}, "m-1"))
    assert held.body["status"] == "AUTHORIZED"
    # When the merchant captures it / Then ePay took it on that terminal (another terminal's
    # token would be refused: the simulator checks the token's terminal owns the transaction)
    captured = two.invoke(capture_event(held.body["id"]))
    assert (captured.status, captured.body["status"]) == (200, "CAPTURED")
    entry = two.simulator.ledger_entry(held.body["invoiceId"], TEST_TERMINAL2_ID)
    assert entry is not None
    assert entry.status_name == "CHARGE"
    # Given another one whose auth answer was lost after ePay took it
    two.simulator.inject("auth", "500_after_commit")
    lost = two.invoke(create_event({**RENEWAL, "cardId": APPROVE}, "m-2")).body
    assert lost["status"] == "UNKNOWN"
    # When it is reconciled / Then the status API of its terminal settled it (the first
    # terminal's would answer 106, wrong terminal), without a second auth
    settled = two.invoke(reconcile_event(lost["id"]))
    assert settled.body["status"] == "CAPTURED"
    assert len(two.auths()) == 2


def test_postlink_is_checked_against_the_charges_own_terminal(
    two: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a postLink receiver and a merchant-initiated charge captured on the second terminal
    receiver = Receiver(load_function("postlink").lambda_handler, forward=False).start()
    monkeypatch.setenv("PUBLIC_BASE_URL", receiver.url)
    bootstrap.reset()
    try:
        charges = Stack(
            two.table, two.dynamodb, two.simulator, load_function("charges").lambda_handler
        )
        postlink = Stack(two.table, two.dynamodb, two.simulator, receiver.handler)
        pl = PostLinkStack(charges, postlink, receiver)
        charge = pl.create({**RENEWAL, "cardId": APPROVE}, "p-1")
        payload = pl.notification(charge["invoiceId"])
        # Then ePay's notification names the charge's terminal by its code
        assert payload["terminal"] == TEST_TERMINAL2_CODE
        # When a copy names our other terminal / Then it is forged: nothing changes
        assert pl.post({**payload, "terminal": TEST_TERMINAL_CODE}).status == 403
        assert pl.post({**payload, "terminal": TEST_TERMINAL_ID}).status == 403
        # When the genuine one arrives / Then it is verified (the status API confirms the code)
        assert pl.post(payload).status == 200
        assert [i["verdict"]["S"] for i in pl.inbox()].count("settled") == 1
    finally:
        receiver.stop()


def test_a_full_terminal_answers_503_before_epay_while_another_purpose_charges_on(
    two: Stack,
) -> None:
    # Given every ring of the customer terminal marked full for an hour
    until = int(time.time()) + 3600
    for shard in range(SHARDS):
        two.dynamodb.put_item(
            TableName=two.table,
            Item={
                "pk": {"S": f"INVOICE_RING#{TEST_TERMINAL_ID}#{shard:02d}"},
                "sk": {"S": "RING"},
                "n": {"N": "62500"},
                "fullUntil": {"N": str(until)},
            },
        )
    # When a customer-present charge is asked for
    answer = two.invoke(create_event(CUSTOMER, "full-1"))
    # Then it is a clear 503 with when to retry, nothing written and nothing sent to ePay
    assert answer.status == 503
    assert answer.body["error"]["code"] == "invoice_space_exhausted"
    assert 3500 <= int(answer.headers["retry-after"]) <= 3600
    assert two.charge_items() == []
    assert two.simulator.journal == []
    # And a merchant-initiated charge still goes through on its own terminal
    assert two.invoke(create_event(RENEWAL, "full-2")).body["status"] == "CAPTURED"
