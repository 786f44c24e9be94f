"""The ledger's lookups: entries seeded through ``record`` or put in directly are found."""

from __future__ import annotations

from decimal import Decimal

import urllib3

from local.epay_sim import (
    CARD_AUTH,
    ERR_INVOICE_USED,
    TEST_TERMINAL_ID,
    EpaySimulator,
    LedgerEntry,
)
from tests.simulator.epay_client import (
    auth_body,
    invoice_token,
    new_invoice,
    post_auth,
    status,
)


def _charged(invoice: str) -> LedgerEntry:
    return LedgerEntry(
        invoice_id=invoice,
        transaction_id=f"tx-{invoice}",
        status_name="CHARGE",
        amount=Decimal(100),
        currency="KZT",
        terminal=TEST_TERMINAL_ID,
        card_id=CARD_AUTH,
        account_id="customer-1",
        captured_amount=Decimal(100),
    )


def test_a_recorded_transaction_is_found_by_status_and_blocks_its_invoice(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a transaction seeded as if ePay had made it
    invoice = new_invoice()
    key = sim.record(_charged(invoice))

    # When the status API is asked about it and an auth reuses its invoice
    found = status(http, sim, invoice)
    token = invoice_token(http, sim, invoice, "100")
    reused = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH, 100))

    # Then both see it
    assert key == invoice
    assert found["resultCode"] == "100"
    assert found["transaction"]["id"] == f"tx-{invoice}"
    assert reused.status == 400
    assert reused.json()["code"] == ERR_INVOICE_USED
    assert sim.entry_by_transaction(f"tx-{invoice}") is sim.ledger[invoice]


def test_an_entry_put_in_the_ledger_directly_is_still_found(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an entry written straight into the ledger dict (not through record)
    invoice = new_invoice()
    sim.ledger[invoice] = _charged(invoice)

    # When it is looked up
    found = status(http, sim, invoice)

    # Then the lookups noticed it
    assert found["resultCode"] == "100"
    assert sim.ledger_entry(invoice) is sim.ledger[invoice]


def test_a_reset_forgets_every_lookup(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a transaction, then a reset
    invoice = new_invoice()
    sim.record(_charged(invoice))
    sim.reset()

    # When the invoice is asked about and charged again
    found = status(http, sim, invoice)
    token = invoice_token(http, sim, invoice, "100")
    again = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH, 100))

    # Then it is unknown, and free
    assert found["resultCode"] == "102"
    assert again.status == 200
