"""The test cards and the saved-card endpoints (``GET /cards``, ``POST /card/deactivate``)."""

from __future__ import annotations

import urllib3

from local.epay_sim import CARD_3DS, CARD_AUTH, CARDS, EpaySimulator
from tests.simulator.epay_client import pay, terminal_token


def test_cards_list_and_deactivate(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the saved cards of an account
    headers = {"Authorization": f"Bearer {terminal_token(http, sim)}"}
    listed = http.request("GET", f"{sim.api_url}/cards/customer-1", headers=headers).json()
    assert {"ID", "CardMask", "PayerName", "PaymentAvailable"} <= set(listed[0])
    assert CARD_AUTH in {card["ID"] for card in listed}
    # When the AUTH card is deactivated
    gone = http.request("POST", f"{sim.api_url}/card/deactivate/{CARD_AUTH}", headers=headers)
    # Then it leaves the list and charging it is "no such card"
    assert gone.status == 200
    after = http.request("GET", f"{sim.api_url}/cards/customer-1", headers=headers).json()
    assert CARD_AUTH not in {card["ID"] for card in after}
    _, resp = pay(http, sim, CARD_AUTH)
    assert resp.json()["code"] == 471


def test_cards_table_is_complete() -> None:
    # Given the documented test cards / Then each has an outcome
    assert len(CARDS) == 10
    assert CARDS[CARD_AUTH].outcome == "AUTH"
    assert CARDS[CARD_3DS].outcome == "3D"
