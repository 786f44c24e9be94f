"""The status API (``GET /check-status/payment/transaction/{invoiceId}``)."""

from __future__ import annotations

import urllib3

from local.epay_sim import CARD_AUTH, TEST_TERMINAL_CODE, TEST_TERMINAL_ID, EpaySimulator
from tests.simulator.epay_client import pay, request_token, status


def test_status_found_and_not_found(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given an authorised invoice
    invoice, resp = pay(http, sim, CARD_AUTH)
    # When the status API is asked about it and about an unknown invoice
    found = status(http, sim, invoice)
    missing = status(http, sim, "555555555")
    # Then the first is 100 with the transaction in ePay's casing, the second 102
    assert found["resultCode"] == "100"
    tx = found["transaction"]
    assert tx["statusName"] == "AUTH"
    assert tx["invoiceID"] == invoice
    assert tx["id"] == resp.json()["id"]
    assert tx["cardID"] == CARD_AUTH
    assert tx["terminalID"] == TEST_TERMINAL_ID
    # And, as ePay's records: the terminal's 8-digit code beside its UUID, reasonCode as a
    # string, secure as a boolean, the three amounts, bonus, data and intReference
    assert tx["terminal"] == TEST_TERMINAL_CODE
    assert tx["reasonCode"] == "0"
    assert tx["secure"] is False
    assert (tx["amount"], tx["orgAmount"], tx["payoutAmount"], tx["amountBonus"]) == (
        100,
        100,
        0,
        0,
    )
    assert {"reference", "approvalCode", "cardMask", "reason", "createdDate"} <= set(tx)
    assert {"data", "intReference"} <= set(tx)
    assert missing["resultCode"] == "102"
    assert "transaction" not in missing


def test_status_with_a_token_without_terminal_is_104(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a token requested without terminal
    resp = request_token(http, sim, {"terminal": None})
    token = resp.json()["access_token"]
    # When it asks for a status
    stat = http.request(
        "GET",
        f"{sim.api_url}/check-status/payment/transaction/123456",
        headers={"Authorization": f"Bearer {token}"},
    )
    # Then the result code says there is no terminal
    assert stat.json()["resultCode"] == "104"
