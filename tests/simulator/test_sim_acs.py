"""3-D Secure: the issuer's ACS page, PaRes, and confirmPayment."""

from __future__ import annotations

import urllib.parse
from decimal import Decimal

import pytest
import urllib3

from local.epay_sim import CARD_3DS, CARD_AUTH, ERR_REQUEST, ERR_TOKEN_BINDING, EpaySimulator
from tests.simulator.epay_client import (
    acs_form,
    auth_body,
    invoice_token,
    new_invoice,
    pay,
    post_auth,
    terminal_token,
)


@pytest.mark.parametrize(("button", "final"), [("approve", "AUTH"), ("fail", "REJECT")])
def test_three_ds_acs_and_confirm(
    http: urllib3.PoolManager, sim: EpaySimulator, button: str, final: str
) -> None:
    # Given an auth that needs 3-D Secure
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_3DS))
    assert resp.status == 200
    data = resp.json()
    assert data["status"] == "3D"
    secure = data["secure3D"]
    assert secure["action"] == f"{sim.base_url}/acs"
    assert sim.ledger[invoice].status_name == "3D"
    # When the browser posts PaReq/MD/TermUrl to the ACS and presses a button
    term_url = "http://127.0.0.1:9/3ds/return?charge=abc"
    page = http.request(
        "POST",
        secure["action"],
        fields={"PaReq": secure["paReq"], "MD": secure["md"], "TermUrl": term_url},
        encode_multipart=False,
    )
    assert page.status == 200
    action, fields = acs_form(page.data.decode(), button)
    assert action == term_url
    assert fields["MD"] == secure["md"]
    # And the merchant forwards PaRes/MD to confirmPayment with the original token
    confirm = http.request(
        "POST",
        f"{sim.api_url}/payments/cards/confirmPayment?Access={token}",
        fields={"PaRes": fields["PaRes"], "MD": fields["MD"]},
        encode_multipart=False,
        redirect=False,
    )
    # Then ePay redirects with the reference or the error code, and the ledger is final
    assert confirm.status == 302
    location = confirm.headers["Location"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    entry = sim.ledger[invoice]
    assert entry.status_name == final
    if final == "AUTH":
        assert query["reference"] == [entry.reference]
        assert location.startswith("http://127.0.0.1:9/back")
    else:
        assert query["errorCode"] == ["455"]
        assert location.startswith("http://127.0.0.1:9/fail")
        assert entry.reason_code == 455


def test_three_ds_confirm_needs_the_invoice_token_and_a_genuine_pares(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a pending 3DS auth
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    secure = post_auth(http, sim, token, auth_body(invoice, CARD_3DS)).json()["secure3D"]
    # When confirmPayment gets another token, then a forged PaRes
    other = terminal_token(http, sim)
    wrong_token = http.request(
        "POST",
        f"{sim.api_url}/payments/cards/confirmPayment?Access={other}",
        fields={"PaRes": "Zm9yZ2Vk", "MD": secure["md"]},
        encode_multipart=False,
        redirect=False,
    )
    forged = http.request(
        "POST",
        f"{sim.api_url}/payments/cards/confirmPayment?Access={token}",
        fields={"PaRes": "Zm9yZ2Vk", "MD": secure["md"]},
        encode_multipart=False,
        redirect=False,
    )
    # Then both are refused and the charge still waits for 3DS
    assert wrong_token.status == 400
    assert wrong_token.json()["code"] == ERR_TOKEN_BINDING
    assert forged.status == 400
    assert forged.json()["code"] == ERR_REQUEST
    assert sim.ledger[invoice].status_name == "3D"


def test_single_stage_terminal_with_json_confirm() -> None:
    # Given a single-stage terminal whose confirmPayment answers JSON instead of a redirect
    with EpaySimulator(single_stage=True, confirm_response="json") as other:
        pool = urllib3.PoolManager(retries=False, timeout=5.0)
        # When the AUTH card is charged and a 3DS charge is approved through a GET to the ACS
        invoice, resp = pay(pool, other, CARD_AUTH)
        three_ds = new_invoice()
        token = invoice_token(pool, other, three_ds)
        secure = post_auth(pool, other, token, auth_body(three_ds, CARD_3DS)).json()["secure3D"]
        query = urllib.parse.urlencode(
            {"PaReq": secure["paReq"], "MD": secure["md"], "TermUrl": "http://127.0.0.1:9/t"}
        )
        page = pool.request("GET", f"{secure['action']}?{query}")
        _, fields = acs_form(page.data.decode(), "approve")
        confirm = pool.request(
            "POST",
            f"{other.api_url}/payments/cards/confirmPayment?Access={token}",
            fields=fields,
            encode_multipart=False,
            redirect=False,
        )
        # Then both end as CHARGE, the confirm answering JSON with ePay's casing
        assert resp.json()["status"] == "CHARGE"
        assert confirm.status == 200
        assert confirm.json()["status"] == "CHARGE"
        assert confirm.json()["invoiceID"] == three_ds
        assert other.ledger[invoice].captured_amount == Decimal(100)
        assert other.ledger[three_ds].status_name == "CHARGE"


def _approve_at_the_acs(
    http: urllib3.PoolManager, sim: EpaySimulator, invoice: str, **overrides: str
) -> tuple[str, dict[str, str]]:
    """(token, approve form fields) for a new 3DS auth of ``invoice``."""
    token = invoice_token(http, sim, invoice)
    body = auth_body(invoice, CARD_3DS, **overrides)
    secure = post_auth(http, sim, token, body).json()["secure3D"]
    page = http.request(
        "POST",
        secure["action"],
        fields={"PaReq": secure["paReq"], "MD": secure["md"], "TermUrl": "http://127.0.0.1:9/t"},
        encode_multipart=False,
    )
    _, fields = acs_form(page.data.decode(), "approve")
    return token, fields


def test_confirm_without_back_link_lands_on_the_result_page(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a 3DS auth without backLink, approved at the ACS
    invoice = new_invoice()
    token, fields = _approve_at_the_acs(http, sim, invoice, backLink="", failureBackLink="")
    # When confirmPayment redirects and the browser follows the redirect
    confirm = http.request(
        "POST",
        f"{sim.api_url}/payments/cards/confirmPayment?Access={token}",
        fields=fields,
        encode_multipart=False,
        redirect=False,
    )
    location = confirm.headers["Location"]
    result = http.request("GET", location)
    # Then it lands on the simulator's result page, which shows the reference
    assert location.startswith(f"{sim.base_url}/3ds/result?")
    assert result.status == 200
    reference = sim.ledger[invoice].reference
    assert f'<span id="reference">{reference}</span>' in result.data.decode()


def test_repeated_confirm_changes_nothing(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a 3DS auth approved and confirmed once
    invoice = new_invoice()
    token, fields = _approve_at_the_acs(http, sim, invoice)
    url = f"{sim.api_url}/payments/cards/confirmPayment?Access={token}"
    first = http.request("POST", url, fields=fields, encode_multipart=False, redirect=False)
    reference = sim.ledger[invoice].reference
    # When the same PaRes is confirmed again
    again = http.request("POST", url, fields=fields, encode_multipart=False, redirect=False)
    # Then both answers carry the same reference and the transaction stays AUTH
    assert first.headers["Location"] == again.headers["Location"]
    assert f"reference={reference}" in again.headers["Location"]
    entry = sim.ledger[invoice]
    assert entry.status_name == "AUTH"
    assert entry.history[-1] == "confirmPayment repeated: stays AUTH"
