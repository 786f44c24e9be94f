"""Refunds and voids: what the ledger keeps, what the status API shows, and how faults play."""

from __future__ import annotations

from decimal import Decimal

import pytest
import urllib3

from local.epay_sim import CARD_AUTH, CARD_CHARGE, EpaySimulator, Refund
from tests.simulator.epay_client import FakeClock, operation, pay, status

SHORT_READ = urllib3.Timeout(connect=1.0, read=0.3)


def amounts(tx: dict[str, object]) -> tuple[object, object, object]:
    """(amount, orgAmount, payoutAmount) of a status transaction."""
    return tx["amount"], tx["orgAmount"], tx["payoutAmount"]


def test_ledger_keeps_every_refund_with_its_external_id(
    http: urllib3.PoolManager, sim: EpaySimulator, clock: FakeClock
) -> None:
    # Given a CHARGE of 100
    invoice, resp = pay(http, sim, CARD_CHARGE)
    tx_id = resp.json()["id"]
    # When 40 is refunded with an externalID, and later the rest without one
    first_at = sim.now()
    assert operation(http, sim, tx_id, "refund", amount="40", externalID="r-1").status == 200
    clock.advance(60)
    assert operation(http, sim, tx_id, "refund").status == 200
    # Then the ledger lists both refunds in order, with amount, externalID and time
    entry = sim.ledger[invoice]
    assert entry.refunds == [
        Refund(Decimal(40), "r-1", first_at),
        Refund(Decimal(60), "", first_at + 60),
    ]
    assert entry.refund_external_ids == ["r-1"]
    assert entry.refunded_amount == Decimal(100)
    # And the control endpoint shows them too
    shown = http.request("GET", f"{sim.base_url}/_sim/ledger").json()[invoice]
    assert shown["refunds"] == [
        {"amount": "40", "externalID": "r-1", "at": first_at},
        {"amount": "60", "externalID": "", "at": first_at + 60},
    ]
    assert shown["refund_external_ids"] == ["r-1"]


def test_status_amounts_after_partial_and_full_refund(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a CHARGE of 100
    invoice, resp = pay(http, sim, CARD_CHARGE)
    tx_id = resp.json()["id"]
    # When 40 is refunded, then the rest
    operation(http, sim, tx_id, "refund", amount="40", externalID="r-1")
    partial = status(http, sim, invoice)["transaction"]
    operation(http, sim, tx_id, "refund", externalID="r-2")
    full = status(http, sim, invoice)["transaction"]
    # Then a partial refund keeps CHARGE, standing at 60 of 100 with 40 paid back
    assert partial["statusName"] == "CHARGE"
    assert amounts(partial) == (60, 100, 40)
    assert partial["orgAmount"] == partial["amount"] + partial["payoutAmount"]
    # And a full refund is REFUND, standing at 0 with everything paid back
    assert full["statusName"] == "REFUND"
    assert amounts(full) == (0, 100, 100)


def test_status_amounts_with_fractions_after_partial_refund(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given ePay's own example: a CHARGE of 22.22 / When 10 is refunded
    invoice, resp = pay(http, sim, CARD_CHARGE, amount=22.22)
    assert operation(http, sim, resp.json()["id"], "refund", amount="10").status == 200
    # Then the status shows orgAmount 22.22, amount 12.22 and payoutAmount 10
    tx = status(http, sim, invoice)["transaction"]
    assert (tx["statusName"], *amounts(tx)) == ("CHARGE", 12.22, 22.22, 10)


def test_status_after_cancel(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a held AUTH of 100 / When it is cancelled
    invoice, resp = pay(http, sim, CARD_AUTH)
    assert operation(http, sim, resp.json()["id"], "cancel").status == 200
    # Then the status API shows CANCEL, standing at 0
    tx = status(http, sim, invoice)["transaction"]
    assert tx["statusName"] == "CANCEL"
    assert amounts(tx) == (0, 100, 100)


def test_status_after_partial_capture_and_refund(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an AUTH of 100 captured for 60 / When 20 of it is refunded
    invoice, resp = pay(http, sim, CARD_AUTH)
    tx_id = resp.json()["id"]
    assert operation(http, sim, tx_id, "charge", amount="60").status == 200
    assert operation(http, sim, tx_id, "refund", amount="20").status == 200
    # Then it stands at 40 and the three amounts stay consistent
    tx = status(http, sim, invoice)["transaction"]
    assert tx["statusName"] == "CHARGE"
    assert tx["amount"] == 40
    assert tx["orgAmount"] == tx["amount"] + tx["payoutAmount"]


# ------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("fault", "http_status", "committed"),
    [
        ("500_after_commit", 500, True),
        ("500_before_commit", 500, False),
        ("nonfinal_after_commit", 400, True),
        ("nonfinal_before_commit", 400, False),
        ("error_as_200", 200, True),
    ],
)
def test_refund_faults(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    fault: str,
    http_status: int,
    committed: bool,
) -> None:
    # Given a CHARGE of 100 and a fault armed for the next refund
    invoice, resp = pay(http, sim, CARD_CHARGE)
    sim.inject("refund", fault)
    # When 40 is refunded
    answer = operation(http, sim, resp.json()["id"], "refund", amount="40", externalID="r-1")
    # Then the answer is the fault's, and the refund happened only if committed
    assert answer.status == http_status
    if fault.startswith("nonfinal"):
        assert answer.json()["code"] == 454
    entry = sim.ledger[invoice]
    assert len(entry.refunds) == int(committed)
    assert entry.refunded_amount == (Decimal(40) if committed else 0)
    tx = status(http, sim, invoice)["transaction"]
    assert tx["payoutAmount"] == (40 if committed else 0)
    (journaled,) = sim.requests("refund")
    assert journaled.fault == fault


def test_refund_timeout_after_commit_then_a_retry_with_the_same_external_id(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a CHARGE of 100 and a refund that commits and then never answers
    invoice, resp = pay(http, sim, CARD_CHARGE)
    tx_id = resp.json()["id"]
    sim.inject("refund", "timeout_after_commit", delay=1.0)
    # When it is sent with a short read timeout, then sent again with the same externalID
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        operation(http, sim, tx_id, "refund", amount="40", externalID="r-1", timeout=SHORT_READ)
    retry = operation(http, sim, tx_id, "refund", amount="40", externalID="r-1")
    # Then the refund exists once: the retry is refused, and the status API shows it
    assert retry.status == 400
    assert retry.json() == {"code": 100, "message": ""}
    entry = sim.ledger[invoice]
    assert [(r.amount, r.external_id) for r in entry.refunds] == [(Decimal(40), "r-1")]
    assert status(http, sim, invoice)["transaction"]["payoutAmount"] == 40
    assert [j.status for j in sim.requests("refund")] == [0, 400]


@pytest.mark.parametrize(
    ("fault", "http_status", "committed"),
    [
        ("500_after_commit", 500, True),
        ("500_before_commit", 500, False),
        ("nonfinal_after_commit", 400, True),
        ("nonfinal_before_commit", 400, False),
        ("broken_body", 200, True),
    ],
)
def test_cancel_faults(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    fault: str,
    http_status: int,
    committed: bool,
) -> None:
    # Given a held AUTH and a fault armed for the next cancel
    invoice, resp = pay(http, sim, CARD_AUTH)
    sim.inject("cancel", fault)
    # When it is cancelled
    answer = operation(http, sim, resp.json()["id"], "cancel")
    # Then the answer is the fault's, and the void happened only if committed
    assert answer.status == http_status
    expected = "CANCEL" if committed else "AUTH"
    assert sim.ledger[invoice].status_name == expected
    assert status(http, sim, invoice)["transaction"]["statusName"] == expected


def test_cancel_timeout_after_commit_then_a_retry(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a held AUTH and a cancel that commits and then never answers
    invoice, resp = pay(http, sim, CARD_AUTH)
    tx_id = resp.json()["id"]
    sim.inject("cancel", "timeout_after_commit", delay=1.0)
    # When it is sent with a short read timeout, then sent again
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        operation(http, sim, tx_id, "cancel", timeout=SHORT_READ)
    retry = operation(http, sim, tx_id, "cancel")
    # Then the hold is void once: the retry is refused and the status API shows CANCEL
    assert retry.status == 400
    assert sim.ledger[invoice].status_name == "CANCEL"
    assert status(http, sim, invoice)["transaction"]["statusName"] == "CANCEL"
    assert [j.status for j in sim.requests("cancel")] == [0, 400]
