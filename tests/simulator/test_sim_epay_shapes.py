"""The simulator speaks like ePay: its answers carry every field of the real-world fixtures
(tests/fixtures/epay), and it plays ePay's error shapes as injectable faults: non-final codes
(whether or not the transaction went through), error answers with HTTP 200, unknown accounts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local.epay_sim import (
    CARD_AUTH,
    CARD_INSUFFICIENT_FUNDS,
    TEST_TERMINAL_CODE,
    TEST_TERMINAL_ID,
    EpaySimulator,
)
from tests.simulator.epay_client import (
    auth_body,
    invoice_token,
    new_invoice,
    pay,
    post_auth,
    request_token,
    status,
    terminal_token,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "epay"


def fixture_body(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())["body"]


def cards(http: urllib3.PoolManager, sim: EpaySimulator, account: str) -> Any:
    headers = {"Authorization": f"Bearer {terminal_token(http, sim)}"}
    return http.request("GET", f"{sim.api_url}/cards/{account}", headers=headers)


# ------------------------------------------------------------------------------ shapes


def test_auth_answers_carry_every_field_of_epays(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an approved auth / Then it has every field of the real AUTH answer, and no accountID
    _, resp = pay(http, sim, CARD_AUTH)
    assert set(fixture_body("auth-auth")) <= set(resp.json())
    assert "accountID" not in resp.json()


def test_status_transaction_carries_every_field_of_epays(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an authorised invoice / When its status is asked
    invoice, _ = pay(http, sim, CARD_AUTH)
    answer = status(http, sim, invoice)
    # Then the transaction has every field of the real one, typed as ePay types them
    tx, real = answer["transaction"], fixture_body("status-100-auth")["transaction"]
    assert set(real) <= set(tx)
    for name in ("secure", "reasonCode", "terminal", "terminalID", "data", "intReference"):
        assert type(tx[name]) is type(real[name]), name
    assert (tx["terminal"], tx["terminalID"]) == (TEST_TERMINAL_CODE, TEST_TERMINAL_ID)


def test_card_list_carries_every_field_of_epays(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an account's saved cards / Then each has every field of the real list, masks dotted
    listed = cards(http, sim, "customer-1").json()
    assert set(fixture_body("cards-list")[0]) <= set(listed[0])
    assert listed[0]["CardMask"] == "4400...0178"
    assert listed[0]["TransactionId"]


def test_an_unknown_account_is_no_record(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given an account nobody saved a card under / When its cards are listed
    resp = cards(http, sim, "unknown-42")
    # Then ePay's "no record" answer comes
    assert (resp.status, resp.json()) == (400, fixture_body("cards-unknown-account"))


def test_token_has_an_empty_refresh_token(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a token answer / Then refresh_token is empty, as ePay sends it
    assert request_token(http, sim).json()["refresh_token"] == ""


def test_postlink_carries_every_field_of_epays(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an auth whose postLink points off loopback (recorded, never sent)
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice, postLink="http://192.0.2.10/hook")
    post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
    (delivery,) = sim.wait_for_postlinks(1)
    # Then its payload has every field of the real postLink, secure as "yes"/"no"
    assert set(fixture_body("postlink-ok")) <= set(delivery.payload)
    assert delivery.payload["secure"] in {"yes", "no"}


@pytest.mark.parametrize(
    ("setting", "terminal"),
    [("code", TEST_TERMINAL_CODE), ("uuid", TEST_TERMINAL_ID), ("none", None)],
)
def test_postlink_terminal_is_configurable(
    http: urllib3.PoolManager, sim: EpaySimulator, setting: str, terminal: str | None
) -> None:
    # Given postLinks naming the terminal by its code, its UUID, or not at all
    sim.postlink_terminal = setting
    try:
        invoice = new_invoice()
        token = invoice_token(http, sim, invoice, postLink="http://192.0.2.10/hook")
        post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
        (delivery,) = sim.wait_for_postlinks(1)
    finally:
        sim.postlink_terminal = "code"
    # Then the payload names it so (or leaves the field out)
    assert delivery.payload.get("terminal", None) == terminal
    assert ("terminal" in delivery.payload) is (terminal is not None)


def test_config_refuses_unknown_terminal_modes_and_codes(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the control endpoint / When asked for a bad postLink terminal mode or non-final code
    for bad in ({"postlink_terminal": "name"}, {"nonfinal_code": 484}):
        resp = http.request("POST", f"{sim.base_url}/_sim/config", body=json.dumps(bad).encode())
        # Then it refuses
        assert resp.status == 400
    ok = {"postlink_terminal": "uuid", "nonfinal_code": 1267}
    assert (
        http.request("POST", f"{sim.base_url}/_sim/config", body=json.dumps(ok).encode()).status
        == 200
    )
    assert (sim.postlink_terminal, sim.nonfinal_code) == ("uuid", 1267)
    sim.postlink_terminal, sim.nonfinal_code = "code", 454


# ------------------------------------------------------------------------------ error faults


@pytest.mark.parametrize("code", [454, 459, 1267])
def test_a_non_final_code_whose_transaction_went_through(
    http: urllib3.PoolManager, sim: EpaySimulator, code: int
) -> None:
    # Given a non-final code armed after the commit
    sim.nonfinal_code = code
    sim.inject("auth", "nonfinal_after_commit")
    try:
        # When the AUTH card is charged
        invoice, resp = pay(http, sim, CARD_AUTH)
    finally:
        sim.nonfinal_code = 454
    # Then the answer is a 400 with the non-final code, yet the ledger shows the money held
    assert resp.status == 400
    assert resp.json()["code"] == code
    assert sim.ledger[invoice].status_name == "AUTH"
    assert status(http, sim, invoice)["transaction"]["statusName"] == "AUTH"


def test_a_non_final_code_before_anything_happened(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a non-final code armed before the commit / When a card is charged
    sim.inject("auth", "nonfinal_before_commit")
    invoice, resp = pay(http, sim, CARD_AUTH)
    # Then the same answer comes, and ePay has no transaction for the invoice
    assert (resp.status, resp.json()["code"]) == (400, 454)
    assert invoice not in sim.ledger
    assert status(http, sim, invoice)["resultCode"] == "102"


def test_an_error_answered_with_http_200(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given errors armed to come as HTTP 200 / When a declined card and an approved one pay
    sim.inject("auth", "error_as_200", count=2)
    declined, refused = pay(http, sim, CARD_INSUFFICIENT_FUNDS)
    approved, ok = pay(http, sim, CARD_AUTH)
    # Then the decline is a 200 {code, message}; an approval is answered as always
    assert (refused.status, refused.json()["code"]) == (200, 484)
    assert "status" not in refused.json()
    assert sim.ledger[declined].status_name == "REJECT"
    assert (ok.status, ok.json()["status"]) == (200, "AUTH")
    assert sim.ledger[approved].status_name == "AUTH"
