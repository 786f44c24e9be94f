"""The token endpoint (``POST /oauth2/token``) and the bearer check, over loopback HTTP."""

from __future__ import annotations

import pytest
import urllib3

from local.epay_sim import CARD_AUTH, EpaySimulator
from tests.simulator.epay_client import (
    FakeClock,
    auth_body,
    invoice_token,
    new_invoice,
    post_auth,
    request_token,
    terminal_token,
)


def test_token_with_wrong_secret_is_401(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the sandbox client id with a wrong secret
    # When a token is requested
    resp = request_token(http, sim, {"client_secret": "not-the-secret"})
    # Then ePay refuses the client
    assert resp.status == 401
    assert resp.json() == {"error": "invalid_client"}


@pytest.mark.parametrize(
    "fields",
    [
        {"grant_type": None},
        {"client_id": None},
        {"invoiceID": "123456", "amount": None, "currency": "KZT"},
        {"invoiceID": "123456", "amount": "100", "currency": None},
        {"invoiceID": "12345", "amount": "100", "currency": "KZT"},
        {"terminal": "00000000-0000-0000-0000-000000000000"},
    ],
)
def test_token_with_missing_or_bad_fields_is_400(
    http: urllib3.PoolManager, sim: EpaySimulator, fields: dict[str, str | None]
) -> None:
    # Given a token form missing a field or with a wrong one
    # When it is sent
    resp = request_token(http, sim, fields)
    # Then it is a 400
    assert resp.status == 400


def test_token_accepts_multipart_and_journal_records_form_fields(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a multipart token request bound to an invoice with notification links
    invoice = new_invoice()
    # When it is sent
    fields: dict[str, str | None] = {
        "invoiceID": invoice,
        "amount": "150.50",
        "currency": "KZT",
        "postLink": "http://127.0.0.1:9/postlink",
        "secret_hash": "s3cr3t",
    }
    resp = request_token(http, sim, fields, multipart=True)
    # Then a bearer token comes back and the journal holds the parsed form
    assert resp.status == 200
    data = resp.json()
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 1200
    assert set(data) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    (entry,) = sim.requests("token")
    assert entry.method == "POST"
    assert entry.path == "/oauth2/token"
    assert entry.status == 200
    assert entry.form is not None
    assert entry.form["invoiceID"] == invoice
    assert entry.form["amount"] == "150.50"
    assert entry.form["secret_hash"] == "s3cr3t"
    assert (entry.header("Content-Type") or "").startswith("multipart/form-data")


def test_expires_in_can_be_a_string() -> None:
    # Given a simulator that sends expires_in as a string, like some ePay answers
    with EpaySimulator(expires_in=7200, expires_in_as_string=True) as other:
        pool = urllib3.PoolManager(retries=False)
        # When a token is requested
        resp = request_token(pool, other)
        # Then expires_in is the string "7200"
        assert resp.json()["expires_in"] == "7200"


def test_token_expires_by_the_injected_clock(
    http: urllib3.PoolManager, sim: EpaySimulator, clock: FakeClock
) -> None:
    # Given a token for an invoice and a terminal token
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    plain = terminal_token(http, sim)
    # When the clock passes the token's lifetime
    clock.advance(1201)
    # Then the API refuses both tokens as unauthorised and nothing is committed
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
    assert resp.status == 401
    stat = http.request(
        "GET",
        f"{sim.api_url}/check-status/payment/transaction/{invoice}",
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert stat.status == 401
    assert sim.ledger == {}
