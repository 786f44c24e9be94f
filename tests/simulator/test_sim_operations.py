"""Operations on a transaction: ``POST /operation/{id}/charge|cancel|refund``."""

from __future__ import annotations

from decimal import Decimal

import urllib3

from local.epay_sim import CARD_AUTH, CARD_CHARGE, EpaySimulator
from tests.simulator.epay_client import operation, pay, terminal_token


def test_capture_only_from_auth_and_not_above_the_hold(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a held AUTH of 100 and a taken CHARGE
    held, resp = pay(http, sim, CARD_AUTH)
    held_id = resp.json()["id"]
    _, charged = pay(http, sim, CARD_CHARGE)
    # When capturing the CHARGE, over-capturing the AUTH, then capturing 60 of it twice
    on_charge = operation(http, sim, charged.json()["id"], "charge")
    too_much = operation(http, sim, held_id, "charge", amount="100.01")
    partial = operation(http, sim, held_id, "charge", amount="60")
    again = operation(http, sim, held_id, "charge")
    # Then only the partial capture of the AUTH succeeds
    assert on_charge.status == 400
    assert on_charge.json() == {"code": 100, "message": ""}
    assert too_much.status == 400
    assert partial.status == 200
    assert again.status == 400
    entry = sim.ledger[held]
    assert entry.status_name == "CHARGE"
    assert entry.captured_amount == Decimal(60)


def test_capture_amount_in_json_body(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a held AUTH
    invoice, resp = pay(http, sim, CARD_AUTH)
    # When capturing with a JSON body {"amount": 25.5}
    capture = http.request(
        "POST",
        f"{sim.api_url}/operation/{resp.json()['id']}/charge",
        body=b'{"amount": 25.5}',
        headers={
            "Authorization": f"Bearer {terminal_token(http, sim)}",
            "Content-Type": "application/json",
        },
    )
    # Then 25.50 is captured
    assert capture.status == 200
    assert sim.ledger[invoice].captured_amount == Decimal("25.50")


def test_cancel_only_from_auth(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a held AUTH
    invoice, resp = pay(http, sim, CARD_AUTH)
    tx_id = resp.json()["id"]
    # When it is cancelled twice
    first = operation(http, sim, tx_id, "cancel")
    second = operation(http, sim, tx_id, "cancel")
    # Then the first cancels and the second fails
    assert first.status == 200
    assert second.status == 400
    assert sim.ledger[invoice].status_name == "CANCEL"


def test_refund_minimum_partial_and_full(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a CHARGE of 100 and an AUTH
    invoice, resp = pay(http, sim, CARD_CHARGE)
    tx_id = resp.json()["id"]
    _, held = pay(http, sim, CARD_AUTH)
    # When refunding the AUTH, 9.99, 40, the same externalID again, then the rest, then more
    on_auth = operation(http, sim, held.json()["id"], "refund", amount="20")
    below_min = operation(http, sim, tx_id, "refund", amount="9.99")
    partial = operation(http, sim, tx_id, "refund", amount="40", externalID="r-1")
    state_after_partial = sim.ledger[invoice].status_name
    same_external = operation(http, sim, tx_id, "refund", amount="10", externalID="r-1")
    rest = operation(http, sim, tx_id, "refund", externalID="r-2")
    beyond = operation(http, sim, tx_id, "refund", amount="10")
    # Then refunds need CHARGE and at least 10; partial keeps CHARGE, full becomes REFUND
    assert on_auth.status == 400
    assert below_min.status == 400
    assert partial.status == 200
    assert state_after_partial == "CHARGE"
    assert same_external.status == 400
    assert rest.status == 200
    assert beyond.status == 400
    entry = sim.ledger[invoice]
    assert entry.status_name == "REFUND"
    assert entry.refunded_amount == Decimal(100)


def test_operation_on_unknown_transaction_fails(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given no transaction
    # When an unknown id is captured
    resp = operation(http, sim, "8d7f2d2e-0000-0000-0000-000000000000", "charge")
    # Then ePay's operation failure comes back
    assert resp.status == 400
    assert resp.json()["code"] == 100
