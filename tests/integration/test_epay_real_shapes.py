"""ePay as it really speaks, end to end (handlers in-process, DynamoDB Local, the simulator):
non-final codes leave a charge UNKNOWN for the status API, final ones decline at once (also in a
2xx body), the terminal's code is learned and a postLink may carry it, or no terminal at all, and
a card-saving postLink is kept."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from local.epay_sim import TEST_TERMINAL_CODE, TEST_TERMINAL_ID
from payments import bootstrap
from payments.aws.charge_store import DynamoChargeStore
from payments.shared.clock import utc_now
from tests.integration.conftest import Stack, create_event
from tests.integration.test_postlink import APPROVE, INSUFFICIENT_FUNDS, PostLinkStack, body
from tests.integration.test_reconcile_api import reconcile_event

pytest_plugins = ["tests.integration.test_postlink"]


@pytest.mark.parametrize("code", [454, 459, 1267])
def test_a_non_final_code_leaves_the_charge_unknown_and_the_status_api_settles_it(
    stack: Stack, code: int
) -> None:
    # Given ePay answers the auth with a non-final code (or one its table lacks), though the
    # money was in fact held
    stack.simulator.nonfinal_code = code
    stack.simulator.inject("auth", "nonfinal_after_commit")
    try:
        created = stack.invoke(create_event(body(), f"nonfinal-{code}")).body
    finally:
        stack.simulator.nonfinal_code = 454
    # Then the charge is UNKNOWN, not DECLINED, and nothing re-sent the auth
    assert created["status"] == "UNKNOWN"
    assert created["error"] is None
    assert stack.simulator.ledger[created["invoiceId"]].status_name == "AUTH"
    # When it is reconciled
    settled = stack.invoke(reconcile_event(created["id"])).body
    # Then the status API's word wins: captured for the whole amount, one auth only
    assert (settled["status"], settled["capturedAmount"]) == ("CAPTURED", 1500.5)
    assert len(stack.auths()) == 1


def test_a_non_final_code_without_a_transaction_ends_failed_after_the_quiet_period(
    stack: Stack,
) -> None:
    # Given a non-final code for an auth that never reached the card
    stack.simulator.inject("auth", "nonfinal_before_commit")
    created = stack.invoke(create_event(body(), "nonfinal-none")).body
    assert created["status"] == "UNKNOWN"
    # When it is reconciled at once, then after ePay could no longer show the invoice
    assert stack.invoke(reconcile_event(created["id"])).body["status"] == "UNKNOWN"
    later = utc_now() + timedelta(minutes=16)
    bootstrap.use_clock(lambda: later)
    # Then it is FAILED: nothing was charged
    assert stack.invoke(reconcile_event(created["id"])).body["status"] == "FAILED"


def test_a_final_code_in_a_2xx_body_declines_with_its_category(stack: Stack) -> None:
    # Given ePay answering a decline (484) with HTTP 200 {code, message}
    stack.simulator.inject("auth", "error_as_200")
    answer = stack.invoke(create_event(body(cardId=INSUFFICIENT_FUNDS), "decline-200"))
    # Then the charge is DECLINED at once, as a soft decline (dunning retries it)
    assert answer.body["status"] == "DECLINED"
    assert (answer.body["error"]["code"], answer.body["error"]["category"]) == ("484", "soft")


def store(stack: Stack) -> DynamoChargeStore:
    return DynamoChargeStore(stack.table, stack.dynamodb)


def test_the_terminal_code_is_kept_once(stack: Stack) -> None:
    # Given no code kept for the terminal / When two paths learn codes for it
    kept = store(stack)
    assert kept.terminal_code(TEST_TERMINAL_ID) is None
    assert kept.remember_terminal_code(TEST_TERMINAL_ID, "98120001") == "98120001"
    # Then the first one is kept (a conditional put), whatever comes later
    assert kept.remember_terminal_code(TEST_TERMINAL_ID.upper(), "98120009") == "98120001"
    assert kept.terminal_code(TEST_TERMINAL_ID) == "98120001"


def test_a_postlink_naming_the_terminal_by_its_code_settles_and_teaches_the_code(
    pl: PostLinkStack,
) -> None:
    # Given an UNKNOWN charge, ePay's postLink naming the terminal by its 8-digit code, and no
    # code learned yet
    pl.receiver.forward = False
    pl.simulator.inject("auth", "500_after_commit")
    charge = pl.create(body(), "code-1")
    notification = pl.notification(charge["invoiceId"])
    assert notification["terminal"] == TEST_TERMINAL_CODE
    # When it is delivered
    answer = pl.post(notification)
    # Then it is genuine: the status API confirmed the code, the charge is settled
    assert answer.status == 200
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"
    # And the code is kept with the terminal for later notifications
    assert store(pl.charges).terminal_code(TEST_TERMINAL_ID) == TEST_TERMINAL_CODE
    # When one names another terminal's code, with the right secret
    forged = pl.post({**notification, "terminal": "98458031", "id": "tx-other"})
    # Then it is refused as forged, judged against both names
    assert forged.status == 403


def test_a_postlink_with_another_code_is_forged_before_any_code_is_known(
    pl: PostLinkStack,
) -> None:
    # Given an UNKNOWN charge and a notification naming a code the status API does not give
    pl.receiver.forward = False
    pl.simulator.inject("auth", "500_after_commit")
    charge = pl.create(body(), "code-2")
    notification = pl.notification(charge["invoiceId"])
    # When it is delivered / Then it is refused, and the charge waits for the reconciler
    assert pl.post({**notification, "terminal": "98458031"}).status == 403
    assert pl.charge(charge["id"])["status"]["S"] == "UNKNOWN"


@pytest.mark.parametrize("mode", ["none", "uuid"])
def test_a_postlink_without_terminal_or_with_the_uuid_is_accepted(
    pl: PostLinkStack, mode: str
) -> None:
    # Given ePay's postLinks leaving the terminal out, or naming its UUID
    pl.receiver.forward = False
    pl.simulator.postlink_terminal = mode
    try:
        pl.simulator.inject("auth", "500_after_commit")
        charge = pl.create(body(cardId=APPROVE), f"mode-{mode}")
        notification = pl.notification(charge["invoiceId"])
    finally:
        pl.simulator.postlink_terminal = "code"
    # When delivered / Then it is verified by the other fields and the status API, and settles
    assert ("terminal" in notification) is (mode == "uuid")
    assert pl.post(notification).status == 200
    assert pl.charge(charge["id"])["status"]["S"] == "CAPTURED"


def test_a_card_saving_postlink_is_kept_as_an_unknown_invoice(pl: PostLinkStack) -> None:
    # Given the postLink of a card verification: amount 0, USD, an invoice id like CARD...
    card_save = {
        "id": "tx-card",
        "invoiceId": "CARD000000731",
        "amount": 0,
        "currency": "USD",
        "terminal": TEST_TERMINAL_CODE,
        "code": "ok",
        "reasonCode": 0,
        "cardId": "c0000000-0000-4000-8000-000000000021",
        "cardMask": "440043******0021",
        "dateTime": "2026-11-28T17:00:01.734125+05:00",
    }
    # When delivered
    answer = pl.post(json.dumps(card_save))
    # Then it is well formed: 200, kept in the inbox as an unknown invoice
    assert answer.status == 200
    (item,) = pl.inbox()
    assert item["verdict"]["S"] == "unknown_invoice"
    assert json.loads(item["notification"]["S"])["cardId"] == "****0021"
