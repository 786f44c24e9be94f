"""Several terminals under one merchant: each with its own invoice space, stages and 3DS setup."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from local.epay_sim import (
    CARD_3DS,
    CARD_AUTH,
    ERR_INVOICE_USED,
    ERR_TOKEN_BINDING,
    TEST_TERMINAL2_CODE,
    TEST_TERMINAL2_ID,
    TEST_TERMINAL_CODE,
    TEST_TERMINAL_ID,
    EpaySimulator,
    Terminal,
)
from local.epay_sim.__main__ import terminal_arg
from tests.simulator.epay_client import (
    FakeClock,
    acs_form,
    auth_body,
    invoice_token,
    new_invoice,
    operation,
    pay,
    post_auth,
    request_token,
    status,
    terminal_token,
)

# The second terminal is set up without 3-D Secure (merchant-initiated charges), two-stage;
# the third is single-stage with 3-D Secure.
TERMINAL3_ID = "5b6f0e2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
TERMINAL3_CODE = "98120003"
TERMINALS: list[dict[str, Any]] = [
    {"id": TEST_TERMINAL2_ID, "code": TEST_TERMINAL2_CODE, "three_ds": False},
    {"id": TERMINAL3_ID, "code": TERMINAL3_CODE, "single_stage": True},
]
NOT_LOOPBACK_HOOK = "http://192.0.2.10/hook"  # recorded by the simulator, never sent


@pytest.fixture(scope="module")
def sim(clock: FakeClock) -> Iterator[EpaySimulator]:
    simulator = EpaySimulator(host="127.0.0.1", port=0, clock=clock, terminals=TERMINALS)
    simulator.start()
    yield simulator
    simulator.stop()


def configure(http: urllib3.PoolManager, sim: EpaySimulator, changes: Any) -> Any:
    return http.request(
        "POST",
        f"{sim.base_url}/_sim/config",
        body=json.dumps(changes).encode(),
        headers={"Content-Type": "application/json"},
    )


def confirm_three_ds(
    http: urllib3.PoolManager, sim: EpaySimulator, token: str, secure: dict[str, str]
) -> urllib3.BaseHTTPResponse:
    """The customer approves at the ACS and the merchant forwards PaRes/MD to confirmPayment."""
    page = http.request(
        "POST",
        secure["action"],
        fields={"PaReq": secure["paReq"], "MD": secure["md"], "TermUrl": "http://127.0.0.1:9/t"},
        encode_multipart=False,
    )
    _, fields = acs_form(page.data.decode(), "approve")
    return http.request(
        "POST",
        f"{sim.api_url}/payments/cards/confirmPayment?Access={token}",
        fields={"PaRes": fields["PaRes"], "MD": fields["MD"]},
        encode_multipart=False,
        redirect=False,
    )


# ------------------------------------------------------------------------------ token and auth


def test_token_and_auth_on_the_second_terminal(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the merchant's second terminal
    # When a token names it and an auth is sent on it
    invoice, resp = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID)
    # Then the money is held and the ledger records the terminal
    assert resp.status == 200, resp.data
    assert resp.json()["status"] == "AUTH"
    entry = sim.ledger[invoice]
    assert entry.terminal == TEST_TERMINAL2_ID
    assert sim.ledger_entry(invoice, TEST_TERMINAL2_ID) is entry
    assert sim.ledger_entry(invoice) is None


def test_a_token_for_an_unknown_terminal_is_refused(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given / When a token names a terminal the merchant does not have
    resp = request_token(http, sim, {"terminal": "00000000-0000-4000-8000-00000000dead"})
    # Then it is refused as before
    assert resp.status == 400
    assert resp.json()["error"] == "invalid_request"


def test_auth_naming_another_terminal_than_its_token_is_refused(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a token of the second terminal
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice, terminal=TEST_TERMINAL2_ID)
    # When the auth names the default terminal
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
    # Then it is a binding error and nothing is committed
    assert resp.status == 400
    assert resp.json()["code"] == ERR_TOKEN_BINDING
    assert sim.ledger == {}


# ------------------------------------------------------------------------------ invoice spaces


def test_the_same_invoice_on_two_terminals_is_two_transactions(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an invoice authorised on the default terminal
    invoice, first = pay(http, sim, CARD_AUTH)
    # When the same invoice id is authorised on the second terminal, then again on it
    _, second = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID, invoice=invoice)
    _, again = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID, invoice=invoice)
    # Then both terminals hold a transaction of their own, the repeat on one is refused
    assert first.status == second.status == 200
    assert first.json()["id"] != second.json()["id"]
    assert again.status == 400
    assert again.json()["code"] == ERR_INVOICE_USED
    default, other = sim.ledger_entry(invoice), sim.ledger_entry(invoice, TEST_TERMINAL2_ID)
    assert default is not None
    assert other is not None
    assert (default.auth_count, other.auth_count) == (1, 2)
    # And the ledger keys the later one by terminal and invoice
    assert sim.ledger[invoice] is default
    assert sim.ledger[f"{TEST_TERMINAL2_ID}/{invoice}"] is other


def test_last6_clash_only_within_a_terminal(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given an invoice on the default terminal
    invoice, _ = pay(http, sim, CARD_AUTH)
    # When invoices with the same last 6 digits are sent on the second terminal, then on the
    # default terminal
    on_other, other = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID, invoice="9" + invoice)
    _, same = pay(http, sim, CARD_AUTH, invoice="8" + invoice)
    # Then only the clash within the default terminal is refused (without counting a reuse)
    assert other.status == 200
    assert sim.ledger[on_other].terminal == TEST_TERMINAL2_ID
    assert same.status == 400
    assert same.json()["code"] == ERR_INVOICE_USED
    assert sim.ledger[invoice].auth_count == 1
    assert "8" + invoice not in sim.ledger


# ------------------------------------------------------------------------------ status


def test_status_on_another_terminal_is_106(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given an invoice only on the second terminal
    invoice, _ = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID)
    # When the default terminal's token and the third terminal's ask about it
    on_default = status(http, sim, invoice)
    on_third = status(http, sim, invoice, terminal=TERMINAL3_ID)
    # Then both answer wrong terminal, without the transaction
    assert on_default == {"resultCode": "106", "resultMessage": "Wrong terminal"}
    assert on_third["resultCode"] == "106"


def test_status_names_the_transactions_terminal(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the same invoice on the default and the second terminal
    invoice, first = pay(http, sim, CARD_AUTH)
    _, second = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID, invoice=invoice)
    # When each terminal asks the status API about it
    on_default = status(http, sim, invoice)["transaction"]
    on_second = status(http, sim, invoice, terminal=TEST_TERMINAL2_ID)["transaction"]
    # Then each sees its own transaction, named by its terminal's code and UUID
    assert on_default["id"] == first.json()["id"]
    assert (on_default["terminal"], on_default["terminalID"]) == (
        TEST_TERMINAL_CODE,
        TEST_TERMINAL_ID,
    )
    assert on_second["id"] == second.json()["id"]
    assert (on_second["terminal"], on_second["terminalID"]) == (
        TEST_TERMINAL2_CODE,
        TEST_TERMINAL2_ID,
    )


# ------------------------------------------------------------------------------ postLink


@pytest.mark.parametrize(
    ("naming", "expected"),
    [("code", TEST_TERMINAL2_CODE), ("uuid", TEST_TERMINAL2_ID), ("none", None)],
)
def test_postlink_names_the_transactions_terminal(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    naming: str,
    expected: str | None,
) -> None:
    # Given postLinks naming the terminal by its code, its UUID or not at all
    monkeypatch.setattr(sim, "postlink_terminal", naming)
    invoice = new_invoice()
    token = invoice_token(
        http, sim, invoice, terminal=TEST_TERMINAL2_ID, postLink=NOT_LOOPBACK_HOOK
    )
    # When an auth on the second terminal succeeds
    body = auth_body(invoice, CARD_AUTH, terminalId=TEST_TERMINAL2_ID)
    assert post_auth(http, sim, token, body).status == 200
    # Then its notification names the second terminal, not the default one
    (delivery,) = sim.postlinks
    assert delivery.payload["invoiceId"] == invoice
    assert delivery.payload.get("terminal") == expected
    assert ("terminal" in delivery.payload) is (expected is not None)


# ------------------------------------------------------------------------------ 3DS and stages


def test_a_terminal_without_three_ds_approves_the_3ds_card_at_once(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the 3-D Secure test card
    # When it is charged on the second terminal (no 3DS) and on the default terminal
    no_3ds, plain = pay(http, sim, CARD_3DS, terminal=TEST_TERMINAL2_ID)
    with_3ds, asked = pay(http, sim, CARD_3DS)
    # Then the terminal without 3DS holds the money without the step; the other asks for it
    assert plain.status == 200
    assert plain.json()["status"] == "AUTH"
    assert plain.json()["secure3D"] is None
    assert sim.ledger[no_3ds].status_name == "AUTH"
    assert sim.ledger[no_3ds].secure is False
    assert asked.json()["status"] == "3D"
    assert sim.ledger[with_3ds].status_name == "3D"


def test_single_stage_is_per_terminal(
    http: urllib3.PoolManager, sim: EpaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a two-stage default, a two-stage second and a single-stage third terminal
    # When the AUTH card is charged on each
    _, default = pay(http, sim, CARD_AUTH)
    _, second = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID)
    third_invoice, third = pay(http, sim, CARD_AUTH, terminal=TERMINAL3_ID)
    # Then only the single-stage terminal takes the money at once
    assert [r.json()["status"] for r in (default, second, third)] == ["AUTH", "AUTH", "CHARGE"]
    assert sim.ledger[third_invoice].captured_amount == 100
    # And the global single_stage setting is the default terminal's only
    monkeypatch.setattr(sim, "single_stage", True)
    _, default = pay(http, sim, CARD_AUTH)
    _, second = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID)
    assert [r.json()["status"] for r in (default, second)] == ["CHARGE", "AUTH"]


def test_a_3ds_step_ends_as_its_terminals_stage(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a 3DS charge on the single-stage third terminal
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice, terminal=TERMINAL3_ID)
    asked = post_auth(http, sim, token, auth_body(invoice, CARD_3DS, terminalId=TERMINAL3_ID))
    assert asked.json()["status"] == "3D"
    # When the customer approves and the merchant confirms
    confirm = confirm_three_ds(http, sim, token, asked.json()["secure3D"])
    # Then the money is taken, as the terminal is single-stage
    assert confirm.status == 302
    assert "reference=" in confirm.headers["Location"]
    assert sim.ledger[invoice].status_name == "CHARGE"
    assert sim.ledger[invoice].terminal == TERMINAL3_ID


# ------------------------------------------------------------------------------ operations, cards


def test_operations_belong_to_the_transactions_terminal(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an AUTH on the second terminal
    invoice, resp = pay(http, sim, CARD_AUTH, terminal=TEST_TERMINAL2_ID)
    tx_id = resp.json()["id"]
    # When the default terminal tries to capture it, then the second terminal captures and
    # refunds part of it
    foreign = operation(http, sim, tx_id, "charge")
    own = operation(http, sim, tx_id, "charge", terminal=TEST_TERMINAL2_ID)
    foreign_refund = operation(http, sim, tx_id, "refund", amount="10")
    refund = operation(http, sim, tx_id, "refund", terminal=TEST_TERMINAL2_ID, amount="10")
    # Then only the owning terminal's operations succeed
    assert (foreign.status, foreign.json()["code"]) == (400, 100)
    assert own.status == 200
    assert foreign_refund.status == 400
    assert refund.status == 200
    entry = sim.ledger[invoice]
    assert (entry.status_name, entry.refunded_amount) == ("CHARGE", 10)


def test_saved_cards_name_the_tokens_terminal(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given tokens of the default and the second terminal
    # When each lists an account's saved cards
    listed = {
        terminal: http.request(
            "GET",
            f"{sim.api_url}/cards/customer-1",
            headers={"Authorization": f"Bearer {terminal_token(http, sim, terminal)}"},
        ).json()
        for terminal in (TEST_TERMINAL_ID, TEST_TERMINAL2_ID)
    }
    # Then each card's Terminal is the token's terminal
    assert {card["Terminal"] for card in listed[TEST_TERMINAL_ID]} == {TEST_TERMINAL_ID}
    assert {card["Terminal"] for card in listed[TEST_TERMINAL2_ID]} == {TEST_TERMINAL2_ID}


# ------------------------------------------------------------------------------ configuration


def test_terminals_outlive_reset_and_are_listed(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the configured terminals / When the simulator is reset over HTTP
    assert http.request("POST", f"{sim.base_url}/_sim/reset").status == 200
    # Then the terminals stay, and the control endpoint lists them, the default one first
    assert sim.terminals == (
        Terminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE, single_stage=False, three_ds=False),
        Terminal(TERMINAL3_ID, TERMINAL3_CODE, single_stage=True, three_ds=True),
    )
    listed = http.request("GET", f"{sim.base_url}/_sim/terminals").json()
    assert [(t["id"], t["code"]) for t in listed] == [
        (TEST_TERMINAL_ID, TEST_TERMINAL_CODE),
        (TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE),
        (TERMINAL3_ID, TERMINAL3_CODE),
    ]
    assert request_token(http, sim, {"terminal": TERMINAL3_ID}).status == 200


def test_config_endpoint_sets_terminals() -> None:
    # Given a simulator with one terminal
    with EpaySimulator() as other:
        pool = urllib3.PoolManager(retries=False, timeout=5.0)
        before = request_token(pool, other, {"terminal": TEST_TERMINAL2_ID})
        # When the second terminal is configured over HTTP
        changed = configure(pool, other, {"terminals": [TERMINALS[0]]})
        # Then tokens and charges on it work, without 3DS as configured
        assert before.status == 400
        assert changed.status == 200
        assert other.terminals == (Terminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE, False, False),)
        _, resp = pay(pool, other, CARD_3DS, terminal=TEST_TERMINAL2_ID)
        assert resp.json()["status"] == "AUTH"
        # And an empty list leaves the default terminal alone
        assert configure(pool, other, {"terminals": []}).status == 200
        assert request_token(pool, other, {"terminal": TEST_TERMINAL2_ID}).status == 400


@pytest.mark.parametrize(
    "terminals",
    [
        {"id": TEST_TERMINAL2_ID, "code": TEST_TERMINAL2_CODE},  # not a list
        "terminals",
        [TEST_TERMINAL2_ID],  # not an object
        [{"id": "terminal-2", "code": TEST_TERMINAL2_CODE}],  # not a UUID
        [{"code": TEST_TERMINAL2_CODE}],
        [{"id": TEST_TERMINAL2_ID, "code": "9812000"}],  # 7 digits
        [{"id": TEST_TERMINAL2_ID, "code": 98120002}],  # a number, not a string
        [{"id": TEST_TERMINAL2_ID, "code": "9812000X"}],
        [{"id": TEST_TERMINAL2_ID, "code": TEST_TERMINAL2_CODE, "three_ds": "no"}],
        [{"id": TEST_TERMINAL2_ID, "code": TEST_TERMINAL2_CODE, "single_stage": 1}],
        [{"id": TEST_TERMINAL2_ID, "code": TEST_TERMINAL2_CODE, "secret": "x"}],
        [{"id": TEST_TERMINAL_ID, "code": TEST_TERMINAL2_CODE}],  # the default terminal's id
        [{"id": TEST_TERMINAL2_ID, "code": TEST_TERMINAL_CODE}],  # the default terminal's code
        [TERMINALS[0], TERMINALS[0]],  # twice
    ],
)
def test_config_endpoint_refuses_bad_terminals(terminals: Any) -> None:
    # Given a simulator with a second terminal
    with EpaySimulator(terminals=TERMINALS[:1]) as other:
        pool = urllib3.PoolManager(retries=False, timeout=5.0)
        # When bad terminals are configured, together with another setting
        resp = configure(pool, other, {"terminals": terminals, "expires_in": 60})
        # Then it is a 400 and nothing changed
        assert resp.status == 400
        assert "terminals" in resp.json()["error"]
        assert other.terminals == (Terminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE, False, False),)
        assert other.expires_in == 1200
        # And the constructor and the attribute refuse the same
        with pytest.raises(ValueError, match="terminals"):
            EpaySimulator(terminals=terminals)
        with pytest.raises(ValueError, match="terminals"):
            other.terminals = terminals


def test_terminal_objects_are_accepted_too() -> None:
    # Given / When a simulator is built with Terminal objects, then one is set as attribute
    terminal = Terminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE, single_stage=True)
    built = EpaySimulator(terminals=[terminal])
    built.terminals = [*built.terminals, {"id": TERMINAL3_ID, "code": TERMINAL3_CODE}]
    # Then they are kept as Terminals, the default terminal first among all
    assert built.terminals == (terminal, Terminal(TERMINAL3_ID, TERMINAL3_CODE))
    assert [t.id for t in built.all_terminals()] == [
        TEST_TERMINAL_ID,
        TEST_TERMINAL2_ID,
        TERMINAL3_ID,
    ]


def test_standalone_terminal_argument() -> None:
    # Given / When the standalone --terminal arguments are read
    plain = terminal_arg(f"{TEST_TERMINAL2_ID}:{TEST_TERMINAL2_CODE}")
    flagged = terminal_arg(f"{TERMINAL3_ID}:{TERMINAL3_CODE}:single-stage:no-3ds")
    # Then they are terminals, and bad ones are refused
    assert plain == Terminal(TEST_TERMINAL2_ID, TEST_TERMINAL2_CODE)
    assert flagged == Terminal(TERMINAL3_ID, TERMINAL3_CODE, single_stage=True, three_ds=False)
    for bad in (TEST_TERMINAL2_ID, f"{TEST_TERMINAL2_ID}:123", f"{TERMINAL3_ID}:98120003:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="terminal"):
            terminal_arg(bad)
