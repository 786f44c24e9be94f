"""The payment page (ePay's widget): payment-api.js, the page, its outcomes and the saved cards."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from local.epay_sim import CARD_AUTH, TEST_TERMINAL_CODE, TEST_TERMINAL_ID, EpaySimulator
from local.epay_sim.payform_client import PayformError, form_fields, submit_payment
from tests.simulator.epay_client import (
    FakeClock,
    auth_body,
    invoice_token,
    new_invoice,
    operation,
    post_auth,
    request_token,
    status,
    terminal_token,
)
from tests.simulator.postlink_receiver import PostLinkReceiver

BACK = "http://127.0.0.1:9/shop/done?order=42"
FAIL = "http://127.0.0.1:9/shop/failed?order=42"
ACCOUNT = "customer-7"


@pytest.fixture
def receiver() -> Iterator[PostLinkReceiver]:
    server = PostLinkReceiver()
    yield server
    server.close()


def token_json(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    invoice: str,
    amount: str = "100",
    currency: str = "KZT",
    **extra: str,
) -> dict[str, Any]:
    """The whole token JSON (the payment object's ``auth``) bound to an invoice."""
    fields: dict[str, str | None] = {"invoiceID": invoice, "amount": amount, "currency": currency}
    resp = request_token(http, sim, fields | dict(extra))
    assert resp.status == 200, resp.data
    token: dict[str, Any] = resp.json()
    return token


def payment_object(invoice: str, auth: object, **overrides: object) -> dict[str, object]:
    """A valid payment object for 100 KZT with cardSave; ``overrides`` replace fields."""
    obj: dict[str, object] = {
        "invoiceId": invoice,
        "invoiceIdAlt": "",
        "backLink": BACK,
        "failureBackLink": FAIL,
        "postLink": "",
        "failurePostLink": "",
        "language": "rus",
        "description": "Subscription",
        "accountId": ACCOUNT,
        "terminal": TEST_TERMINAL_ID,
        "amount": 100,
        "currency": "KZT",
        "name": "Ivan Petrov",
        "data": {"order": "42"},
        "email": "ivan@example.kz",
        "phone": "77001234567",
        "cardSave": True,
        "auth": auth,
    }
    obj.update(overrides)
    return obj


def verification(invoice: str, auth: object, **overrides: object) -> dict[str, object]:
    """A card verification's payment object (amount 0, USD)."""
    fields: dict[str, object] = {
        "amount": 0,
        "currency": "USD",
        "paymentType": "cardVerification",
        "description": "Card verification",
    }
    return payment_object(invoice, auth, **(fields | overrides))


def open_page(
    http: urllib3.PoolManager, sim: EpaySimulator, obj: dict[str, object]
) -> urllib3.BaseHTTPResponse:
    """POST the payment object as payment-api.js does."""
    return http.request("POST", sim.payform_url, fields=form_fields(obj), encode_multipart=False)


def session_of(page: str) -> str:
    found = re.search(r'name="session" value="([^"]+)"', page)
    assert found, page
    return html.unescape(found.group(1))


def cards_of(http: urllib3.PoolManager, sim: EpaySimulator, account: str) -> Any:
    headers = {"Authorization": f"Bearer {terminal_token(http, sim)}"}
    return http.request("GET", f"{sim.api_url}/cards/{account}", headers=headers)


def charge_saved(
    http: urllib3.PoolManager, sim: EpaySimulator, card_id: str, account: str = ACCOUNT
) -> urllib3.BaseHTTPResponse:
    """An auth of 100 KZT by a saved card id, for a new invoice."""
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    return post_auth(http, sim, token, auth_body(invoice, card_id, accountId=account))


# ---------------------------------------------------------------- the widget script


def test_widget_script_is_javascript_defining_halyk_pay(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the simulator's stand-in for ePay's payment-api.js
    # When the merchant's page loads it
    resp = http.request("GET", sim.widget_url)
    # Then it is JavaScript defining halyk.pay and halyk.showPaymentWidget
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/javascript")
    script = resp.data.decode()
    assert "window.halyk" in script
    assert "pay: function (paymentObject)" in script
    assert "showPaymentWidget: function (paymentObject, callback)" in script
    assert json.dumps(sim.payform_url) in script


_NODE_DOM = """
const fs = require("fs");
const created = [];
function element(tag) {
  return {tag, attrs: {}, children: [], style: {}, value: "",
    setAttribute(k, v) { this.attrs[k] = v; }, appendChild(c) { this.children.push(c); }};
}
global.HTMLFormElement = {prototype: {submit() { created.push(this); }}};
global.window = {};
global.document = {currentScript: {src: process.argv[3]},
  createElement: element, body: element("body")};
eval(fs.readFileSync(process.argv[2], "utf8"));
window.halyk.pay({invoiceId: "000123", amount: 0, cardSave: true, skipped: null,
  auth: {access_token: "t", expires_in: 1200}, description: "Проверка"});
const form = created[0];
const fields = {};
for (const c of form.children) { fields[c.attrs.name] = c.value; }
console.log(JSON.stringify({attrs: form.attrs, fields}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_widget_script_posts_every_field_as_a_form(
    http: urllib3.PoolManager, sim: EpaySimulator, tmp_path: Any
) -> None:
    # Given the script, run by node against a minimal DOM, loaded from the simulator's URL
    script = tmp_path / "payment-api.js"
    script.write_bytes(http.request("GET", sim.widget_url).data)
    runner = tmp_path / "run.js"
    runner.write_text(_NODE_DOM, encoding="utf-8")
    # When halyk.pay is called with a payment object
    out = subprocess.run(
        ["node", str(runner), str(script), sim.widget_url],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    posted = json.loads(out.stdout)
    # Then it POSTs a urlencoded form to <sim>/payform/ with every field: auth as JSON text,
    # booleans as "true"/"false", numbers as text, null left out
    assert posted["attrs"]["method"] == "POST"
    assert posted["attrs"]["action"] == sim.payform_url
    assert posted["attrs"]["enctype"] == "application/x-www-form-urlencoded"
    assert posted["fields"] == {
        "invoiceId": "000123",
        "amount": "0",
        "cardSave": "true",
        "auth": '{"access_token":"t","expires_in":1200}',
        "description": "Проверка",
    }


# ---------------------------------------------------------------- the page


def test_token_bound_to_amount_zero_usd_is_accepted(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a card verification's token form (amount 0, currency USD)
    invoice = new_invoice()
    fields: dict[str, str | None] = {"invoiceID": invoice, "amount": "0", "currency": "USD"}
    # When it is requested / Then a token is issued
    assert request_token(http, sim, fields).status == 200
    # And a negative amount is still refused
    assert request_token(http, sim, fields | {"amount": "-1"}).status == 400
    # And such a token cannot authorise a saved-card charge of 0
    token = invoice_token(http, sim, invoice, amount="0", currency="USD")
    resp = post_auth(http, sim, token, auth_body(invoice, CARD_AUTH, 0, currency="USD"))
    assert resp.status == 400


@pytest.mark.parametrize(
    "change",
    ["other invoice", "other amount", "unknown token", "token without invoice", "no auth"],
)
def test_payment_page_refuses_an_object_its_token_does_not_bind(
    http: urllib3.PoolManager, sim: EpaySimulator, change: str
) -> None:
    # Given a payment object whose auth does not fit it
    invoice = new_invoice()
    auth: object = token_json(http, sim, invoice)
    obj = payment_object(invoice, auth)
    if change == "other invoice":
        obj["auth"] = token_json(http, sim, new_invoice())
    elif change == "other amount":
        obj["amount"] = 150
    elif change == "unknown token":
        obj["auth"] = {"access_token": "no-such-token", "expires_in": 1200}
    elif change == "token without invoice":
        obj["auth"] = request_token(http, sim).json()
    else:
        del obj["auth"]
    # When the browser posts it to the payment page
    resp = open_page(http, sim, obj)
    # Then ePay answers an HTML error page and opens no session
    assert resp.status == 400
    assert resp.headers["Content-Type"].startswith("text/html")
    assert 'id="error"' in resp.data.decode()
    assert 'name="session"' not in resp.data.decode()


def test_payment_page_refuses_a_verification_that_is_not_zero_usd(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a cardVerification object for 100 KZT (its token bound to the same)
    invoice = new_invoice()
    auth = token_json(http, sim, invoice)
    obj = verification(invoice, auth, amount=100, currency="KZT")
    # When it is posted / Then it is refused
    assert open_page(http, sim, obj).status == 400


def test_payment_page_shows_escaped_values_and_the_stable_ids(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a payment object whose description carries markup
    invoice = new_invoice()
    auth = token_json(http, sim, invoice)
    obj = payment_object(invoice, auth, description="<b>Tea & co</b>")
    # When the page is shown
    resp = open_page(http, sim, obj)
    page = resp.data.decode()
    # Then the values are escaped and the form has the stable ids and names
    assert resp.status == 200
    assert "&lt;b&gt;Tea &amp; co&lt;/b&gt;" in page
    assert "<b>Tea" not in page
    assert f'action="{sim.base_url}/payform/pay"' in page
    for needle in (
        'id="card-number" name="cardNumber"',
        'id="approve" name="outcome" value="approve"',
        'id="decline" name="outcome" value="decline"',
        'id="three-ds" name="outcome" value="3ds"',
    ):
        assert needle in page
    # And the token never goes back to the browser
    assert auth["access_token"] not in page


# ---------------------------------------------------------------- outcomes


def test_card_verification_saves_a_card_the_account_can_be_charged_by(
    http: urllib3.PoolManager, sim: EpaySimulator, receiver: PostLinkReceiver
) -> None:
    # Given a verification token carrying postLink and secret_hash
    invoice = new_invoice()
    auth = token_json(
        http,
        sim,
        invoice,
        amount="0",
        currency="USD",
        postLink=f"{receiver.url}/ok",
        secret_hash="hash-77",
    )
    # When the customer types a card and approves
    location = submit_payment(sim.payform_url, verification(invoice, auth), "approve")
    # Then the browser goes back to backLink
    assert location == BACK
    # And the ledger holds a VERIFIED transaction with a new saved card
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    assert entry.status_name == "VERIFIED"
    card_id = entry.card_id
    assert card_id in sim.saved_cards
    assert sim.saved_cards[card_id].account_id == ACCOUNT
    controls = http.request("GET", f"{sim.base_url}/_sim/saved_cards").json()
    assert [card["card_id"] for card in controls] == [card_id]
    # And the postLink says so, with the token's secret_hash
    (body,) = receiver.wait_for(1)
    assert receiver.paths == ["/ok"]
    assert body["code"] == "ok"
    assert body["reasonCode"] == 0
    assert body["cardId"] == card_id
    assert body["cardMask"] == "440043******0178"
    assert body["cardType"] == "VISA"
    assert body["issuer"] == "HALYK BANK"
    assert body["secret_hash"] == "hash-77"
    assert body["amount"] == 0
    assert body["currency"] == "USD"
    assert body["terminal"] == TEST_TERMINAL_CODE
    assert body["accountId"] == ACCOUNT
    # And the status API describes it
    transaction = status(http, sim, invoice)["transaction"]
    assert transaction["statusName"] == "VERIFIED"
    assert transaction["cardID"] == card_id
    assert transaction["cardMask"] == "440043******0178"
    assert transaction["amount"] == 0
    assert transaction["currency"] == "USD"
    assert transaction["terminalID"] == TEST_TERMINAL_ID
    # And the account lists the card beside the test cards (ePay's keys)
    listed = {card["ID"]: card for card in cards_of(http, sim, ACCOUNT).json()}
    assert CARD_AUTH in listed
    assert listed[card_id]["CardMask"] == "4400...0178"
    assert listed[card_id]["PayerName"] == "IVAN PETROV"
    assert listed[card_id]["AccountID"] == ACCOUNT
    assert listed[card_id]["PaymentAvailable"] is True
    assert set(listed[card_id]) == set(listed[CARD_AUTH])
    # And a saved-card charge by it is authorised
    resp = charge_saved(http, sim, card_id)
    assert resp.status == 200
    assert resp.json()["status"] == "AUTH"
    assert resp.json()["cardID"] == card_id


def test_payment_on_a_two_stage_terminal_is_auth_and_can_be_captured(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a 100 KZT payment object (two-stage terminal)
    invoice = new_invoice()
    obj = payment_object(invoice, token_json(http, sim, invoice), cardSave=False)
    # When the customer pays with a Mastercard number
    location = submit_payment(sim.payform_url, obj, card_number="5522 0427 0506 6736")
    # Then it is held (AUTH) with a reference and approval code, and no card is saved
    assert location == BACK
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    assert (entry.status_name, entry.card_id, entry.card_mask) == ("AUTH", "", "552204******6736")
    assert entry.reference
    assert entry.approval_code
    assert not sim.saved_cards
    assert status(http, sim, invoice)["transaction"]["cardType"] == "MC"
    # And the merchant can capture it
    assert operation(http, sim, entry.transaction_id, "charge").status == 200
    assert entry.status_name == "CHARGE"


def test_payment_on_a_single_stage_terminal_is_charge(
    http: urllib3.PoolManager, sim: EpaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a single-stage terminal
    monkeypatch.setattr(sim, "single_stage", True)
    invoice = new_invoice()
    # When the customer pays and saves the card
    submit_payment(sim.payform_url, payment_object(invoice, token_json(http, sim, invoice)))
    # Then the money is taken at once, and the saved card charges at once too
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    assert entry.status_name == "CHARGE"
    assert entry.captured_amount == 100
    resp = charge_saved(http, sim, entry.card_id)
    assert resp.json()["status"] == "CHARGE"
    # And it can be refunded
    assert operation(http, sim, entry.transaction_id, "refund", amount="40").status == 200


def test_decline_notifies_failure_and_goes_to_failure_back_link(
    http: urllib3.PoolManager, sim: EpaySimulator, receiver: PostLinkReceiver
) -> None:
    # Given a payment object with postLink and failurePostLink
    invoice = new_invoice()
    obj = payment_object(
        invoice,
        token_json(http, sim, invoice, secret_hash="hash-9"),
        postLink=f"{receiver.url}/ok",
        failurePostLink=f"{receiver.url}/fail",
    )
    # When the customer's card is declined
    location = submit_payment(sim.payform_url, obj, "decline")
    # Then the transaction is REJECT 484, no card is saved, the browser goes to failureBackLink
    assert location == FAIL
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    assert (entry.status_name, entry.reason_code, entry.card_id) == ("REJECT", 484, "")
    assert not sim.saved_cards
    # And the failure is notified to failurePostLink
    (body,) = receiver.wait_for(1)
    assert receiver.paths == ["/fail"]
    assert (body["code"], body["reasonCode"], body["secret_hash"]) == ("error", 484, "hash-9")
    assert status(http, sim, invoice)["transaction"]["statusName"] == "REJECT"


def test_decline_without_failure_links_uses_post_link_and_back_link(
    http: urllib3.PoolManager, sim: EpaySimulator, receiver: PostLinkReceiver
) -> None:
    # Given no failureBackLink nor failurePostLink (the token carries postLink)
    invoice = new_invoice()
    auth = token_json(http, sim, invoice, postLink=f"{receiver.url}/ok")
    obj = payment_object(invoice, auth, failureBackLink="")
    # When the card is declined / Then backLink and postLink are used
    assert submit_payment(sim.payform_url, obj, "decline") == BACK
    (body,) = receiver.wait_for(1)
    assert (receiver.paths, body["code"]) == (["/ok"], "error")


@pytest.mark.parametrize(
    ("issuer", "final", "back"), [("approve", "AUTH", BACK), ("fail", "REJECT", FAIL)]
)
def test_three_ds_step_ends_as_the_issuer_says(
    http: urllib3.PoolManager, sim: EpaySimulator, issuer: str, final: str, back: str
) -> None:
    # Given a payment whose customer chooses 3-D Secure
    invoice = new_invoice()
    obj = payment_object(invoice, token_json(http, sim, invoice))
    # When the issuer approves or fails it
    location = submit_payment(sim.payform_url, obj, "3ds", issuer=issuer)
    # Then it ends as approved (secure) or declined 455, and returns to the matching link
    assert location == back
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    assert entry.status_name == final
    assert entry.secure is True
    assert entry.reason_code == (455 if final == "REJECT" else 0)
    assert bool(entry.card_id) == (final == "AUTH")


def test_a_payment_session_is_used_once(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a payment page already paid
    invoice = new_invoice()
    page = open_page(http, sim, payment_object(invoice, token_json(http, sim, invoice)))
    fields = {"session": session_of(page.data.decode()), "cardNumber": "", "outcome": "approve"}
    pay_url = f"{sim.base_url}/payform/pay"
    first = http.request("POST", pay_url, fields=fields, encode_multipart=False, redirect=False)
    assert (first.status, first.headers["Location"]) == (303, BACK)
    # When the same session is submitted again
    again = http.request("POST", pay_url, fields=fields, encode_multipart=False, redirect=False)
    # Then it is refused with 409 and nothing changes
    assert again.status == 409
    assert again.headers["Content-Type"].startswith("text/html")
    assert [e.invoice_id for e in sim.ledger.values()] == [invoice]
    # And a second page for the same (paid) invoice is refused
    assert (
        open_page(http, sim, payment_object(invoice, token_json(http, sim, invoice))).status == 400
    )


def test_a_bad_card_number_does_not_use_the_session(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a payment page
    invoice = new_invoice()
    page = open_page(http, sim, payment_object(invoice, token_json(http, sim, invoice)))
    fields = {
        "session": session_of(page.data.decode()),
        "cardNumber": "4400-abc",
        "outcome": "approve",
    }
    pay_url = f"{sim.base_url}/payform/pay"
    # When a card number that is no number is submitted / Then it is refused, nothing recorded
    bad = http.request("POST", pay_url, fields=fields, encode_multipart=False, redirect=False)
    assert bad.status == 400
    assert not sim.ledger
    # And the customer can still pay
    fields["cardNumber"] = "4400430000000178"
    ok = http.request("POST", pay_url, fields=fields, encode_multipart=False, redirect=False)
    assert ok.status == 303


def test_a_session_whose_token_expired_cannot_pay(
    http: urllib3.PoolManager, sim: EpaySimulator, clock: FakeClock
) -> None:
    # Given a payment page shown, then left open until its token expired
    invoice = new_invoice()
    page = open_page(http, sim, payment_object(invoice, token_json(http, sim, invoice)))
    clock.advance(1201)
    fields = {"session": session_of(page.data.decode()), "cardNumber": "", "outcome": "approve"}
    # When the customer pays / Then it is refused and nothing is recorded
    resp = http.request(
        "POST", f"{sim.base_url}/payform/pay", fields=fields, encode_multipart=False
    )
    assert resp.status == 400
    assert not sim.ledger


# ---------------------------------------------------------------- saved cards


def test_deactivated_saved_card_is_not_listed_and_is_no_such_card(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a card saved on the payment page
    invoice = new_invoice()
    auth = token_json(http, sim, invoice, amount="0", currency="USD")
    submit_payment(sim.payform_url, verification(invoice, auth))
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    card_id = entry.card_id
    headers = {"Authorization": f"Bearer {terminal_token(http, sim)}"}
    # When the merchant deactivates it
    gone = http.request("POST", f"{sim.api_url}/card/deactivate/{card_id}", headers=headers)
    # Then it leaves the list, and a charge by it is declined 471 "No such card"
    assert gone.status == 200
    assert card_id not in {card["ID"] for card in cards_of(http, sim, ACCOUNT).json()}
    resp = charge_saved(http, sim, card_id)
    assert (resp.status, resp.json()) == (400, {"code": 471, "message": "No such card"})
    # And deactivating it again is refused, as for the test cards
    again = http.request("POST", f"{sim.api_url}/card/deactivate/{card_id}", headers=headers)
    assert (again.status, again.json()["code"]) == (400, 100)


def test_saved_card_belongs_to_its_account(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a card saved under an account whose id starts with "unknown" (no test cards)
    invoice = new_invoice()
    obj = payment_object(invoice, token_json(http, sim, invoice), accountId="unknown-9")
    submit_payment(sim.payform_url, obj)
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    # When the accounts' cards are listed / Then only that account lists it
    assert [card["ID"] for card in cards_of(http, sim, "unknown-9").json()] == [entry.card_id]
    assert entry.card_id not in {card["ID"] for card in cards_of(http, sim, ACCOUNT).json()}
    assert cards_of(http, sim, "unknown-1").json()["code"] == 1373
    # And charging it under another account is "no such card"
    assert charge_saved(http, sim, entry.card_id, account=ACCOUNT).json()["code"] == 471


def test_saved_card_answers_as_the_test_card_with_its_number(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given cards saved with the 3-D Secure and the insufficient-funds test numbers
    saved: dict[str, str] = {}
    for number in ("4400430000000194", "4400430000000202"):
        invoice = new_invoice()
        obj = payment_object(invoice, token_json(http, sim, invoice))
        submit_payment(sim.payform_url, obj, card_number=number)
        entry = sim.ledger_entry(invoice)
        assert entry is not None
        saved[number] = entry.card_id
    # When each is charged by its card id
    three_ds = charge_saved(http, sim, saved["4400430000000194"]).json()
    declined = charge_saved(http, sim, saved["4400430000000202"])
    # Then the terminal asks for 3-D Secure for the first, the issuer declines the second
    assert three_ds["status"] == "3D"
    assert (declined.status, declined.json()["code"]) == (400, 484)


# ---------------------------------------------------------------- faults


def test_postlink_faults_apply_to_payment_page_notifications(
    http: urllib3.PoolManager,
    sim: EpaySimulator,
    receiver: PostLinkReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given postLinks are lost
    monkeypatch.setattr(sim, "postlink_drop", True)
    invoice = new_invoice()
    obj = payment_object(invoice, token_json(http, sim, invoice, postLink=f"{receiver.url}/ok"))
    # When a payment is approved on the page
    assert submit_payment(sim.payform_url, obj) == BACK
    # Then it happened, but no notification ever comes
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    assert entry.status_name == "AUTH"
    time.sleep(0.2)
    assert receiver.bodies == []
    assert sim.postlinks == []
    # And when postLinks are duplicated, a payment's notification comes twice
    monkeypatch.setattr(sim, "postlink_drop", False)
    monkeypatch.setattr(sim, "postlink_duplicates", 1)
    other = new_invoice()
    obj = payment_object(other, token_json(http, sim, other, postLink=f"{receiver.url}/ok"))
    submit_payment(sim.payform_url, obj)
    first, second = receiver.wait_for(2)
    assert first == second
    assert first["invoiceId"] == other


def test_payment_page_requests_take_injected_faults(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a 500 after commit armed for the next payment-page submit
    sim.inject("payform_pay", "500_after_commit")
    invoice = new_invoice()
    obj = payment_object(invoice, token_json(http, sim, invoice))
    # When the customer pays / Then the browser sees a 500, yet the payment was made
    with pytest.raises(PayformError) as raised:
        submit_payment(sim.payform_url, obj)
    assert raised.value.status == 500
    entry = sim.ledger_entry(invoice)
    assert entry is not None
    assert entry.status_name == "AUTH"
    assert [e.op for e in sim.journal] == ["token", "payform", "payform_pay"]
