"""Saving a card in a real browser: headless Chromium (Debian's, driven by Python playwright)
against the local stack over HTTP (local API Gateway, DynamoDB Local, moto, the ePay simulator).

The customer opens the card setup page (served by the local API on 127.0.0.1), which loads the
simulator's widget script and hands it the payment object; the widget posts it to the simulator's
payment page, where the customer types a card and pays. The merchant's backLink/failureBackLink
are https URLs of a shop that does not exist: the browser intercepts that host and answers a tiny
page, so the test reads where the customer landed. Then the merchant charges the saved card,
removes it, and is refused the next charge. Screenshots go to test-artifacts/cards/.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local.epay_sim import TEST_TERMINAL2_ID
from local.run import LocalStack
from tests.e2e.browser import TIMEOUT_MS, require_chromium

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "cards"
CARD_NUMBER = "4400 4300 0000 0178"  # the simulator approves it like its AUTH test card
SHOP = "https://shop.example.kz"
BACK = f"{SHOP}/cards/saved?customer=42"
FAIL = f"{SHOP}/cards/failed?customer=42"
SETTLE_S = 5.0

require_chromium()


def call(
    stack: LocalStack, http: urllib3.PoolManager, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """One merchant API call (a fresh Idempotency-Key on writes): status and JSON body."""
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    answer = http.request(method, f"{stack.url}{path}", body=data, headers=headers)
    return answer.status, json.loads(answer.data) if answer.data else {}


def create_setup(stack: LocalStack, http: urllib3.PoolManager, account: str) -> dict[str, Any]:
    body = {"accountId": account, "mode": "verify", "backLink": BACK, "failureBackLink": FAIL}
    status, setup = call(stack, http, "POST", "/card-setups", body)
    assert status == 201, setup
    assert setup["id"].startswith("cs_")
    assert setup["status"] == "PENDING"
    assert setup["url"].startswith(f"{stack.url}/card-setups/{setup['id']}/page?token=")
    return setup


def wait_for_setup(stack: LocalStack, http: urllib3.PoolManager, setup_id: str) -> dict[str, Any]:
    """The setup once the simulator's postLink settled it (it stays PENDING until then)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        status, setup = call(stack, http, "GET", f"/card-setups/{setup_id}")
        assert status == 200, setup
        if setup["status"] != "PENDING" or time.monotonic() > deadline:
            return setup
        time.sleep(0.05)


def charge(
    stack: LocalStack, http: urllib3.PoolManager, account: str, card_id: str
) -> tuple[int, dict[str, Any]]:
    # recurrent (the API's default): a merchant-initiated charge, on the local stack's mit terminal
    body = {
        "amount": 1000,
        "currency": "KZT",
        "cardId": card_id,
        "accountId": account,
        "description": "Order",
    }
    return call(stack, http, "POST", "/charges", body)


def walk_setup_page(
    stack: LocalStack, browser: Any, url: str, button: str, prefix: str = ""
) -> str:
    """Open the setup page, let the widget take the customer to ePay's payment page, type the
    card and press `button`; the landing URL at the shop. Screenshots are `<prefix>NN-....png`."""
    simulator = stack.require_simulator()
    context = browser.new_context(locale="kk-KZ", viewport={"width": 800, "height": 600})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    landed: list[str] = []

    def shop(route: Any) -> None:
        landed.append(route.request.url)
        route.fulfill(
            status=200,
            content_type="text/html; charset=utf-8",
            body="<!doctype html><title>Shop</title><h1 id='shop'>Back at the shop</h1>",
        )

    # The merchant's site does not exist: answer it in the browser.
    page.route(f"{SHOP}/**", shop)
    # Hold the widget's post to the payment page until the setup page is on screen.
    payform_url = simulator.payform_url
    held: list[Any] = []
    page.route(payform_url, lambda route: held.append(route))
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        response = page.goto(url, wait_until="commit")
        assert response is not None
        assert response.status == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert f"form-action {simulator.base_url}" in csp
        for _ in range(TIMEOUT_MS // 50):  # the widget posts the payment object on load
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the setup page did not hand the payment object to the widget"
        assert held[0].request.method == "POST"
        # Playwright's own screenshot waits for the pending navigation; DevTools' does not.
        shot = context.new_cdp_session(page).send("Page.captureScreenshot", {"format": "png"})
        (ARTIFACTS / f"{prefix}01-setup-page.png").write_bytes(base64.b64decode(shot["data"]))
        page.unroute(payform_url)
        held[0].continue_()

        # ePay's payment page (the simulator's)
        page.wait_for_selector("#card-number")
        page.fill("#card-number", CARD_NUMBER)
        page.screenshot(path=str(ARTIFACTS / f"{prefix}02-payment-page.png"))
        page.click(f"#{button}")

        # ePay answers 303 to the merchant's link
        page.wait_for_url(f"{SHOP}/**")
        page.wait_for_selector("#shop")
        page.screenshot(path=str(ARTIFACTS / f"{prefix}03-back-at-merchant.png"))
        assert landed
        # And the browser enforced our CSP without refusing anything we need
        assert not [m for m in console if "Content Security Policy" in m], console
        return str(page.url)
    finally:
        context.close()


def test_a_customer_saves_a_card_that_is_charged_then_removed(
    local_stack: LocalStack, browser: Any, http: urllib3.PoolManager
) -> None:
    simulator = local_stack.require_simulator()
    account = f"customer-{uuid.uuid4().hex[:8]}"
    # Given a verifying card setup for a new account
    setup = create_setup(local_stack, http, account)

    # When the customer opens its url and pays on ePay's page with a card
    landed = walk_setup_page(local_stack, browser, setup["url"], "approve")

    # Then the browser is back at the merchant's backLink
    assert landed == BACK
    # And the simulator's postLink settles the setup with a saved card
    settled = wait_for_setup(local_stack, http, setup["id"])
    assert settled["status"] == "SUCCEEDED", settled
    card_id = settled["cardId"]
    assert card_id

    # And the card is in the account's list
    status, cards = call(local_stack, http, "GET", f"/accounts/{account}/cards")
    assert status == 200, cards
    assert [c["id"] for c in cards["data"]] == [card_id]
    (card,) = cards["data"]
    assert (card["status"], card["source"], card["setupId"]) == ("ACTIVE", "setup", setup["id"])
    assert card["mask"].endswith("0178")
    assert card["type"]

    # When the merchant charges the saved card / Then it is charged, on the mit terminal
    status, charged = charge(local_stack, http, account, card_id)
    assert (status, charged.get("status")) == (201, "CAPTURED"), charged
    auth = simulator.requests("auth")[-1].json
    assert (auth["cardId"]["id"], auth["terminalId"]) == (card_id, TEST_TERMINAL2_ID)

    # When the card is removed / Then it is REMOVED and ePay deactivated it
    deactivations = len(simulator.requests("deactivate"))
    status, removed = call(local_stack, http, "DELETE", f"/accounts/{account}/cards/{card_id}")
    assert (status, removed.get("status")) == (200, "REMOVED"), removed
    assert len(simulator.requests("deactivate")) == deactivations + 1

    # When the merchant charges it again / Then it is refused before any ePay call
    auths = len(simulator.requests("auth"))
    status, refused = charge(local_stack, http, account, card_id)
    assert status == 409, refused
    assert refused["error"]["code"] == "card_removed"
    assert len(simulator.requests("auth")) == auths


def test_a_customer_declined_on_the_payment_page_lands_on_failure_back_link(
    local_stack: LocalStack, browser: Any, http: urllib3.PoolManager
) -> None:
    account = f"customer-{uuid.uuid4().hex[:8]}"
    # Given a verifying card setup
    setup = create_setup(local_stack, http, account)
    # When the customer's card is declined on ePay's page
    landed = walk_setup_page(local_stack, browser, setup["url"], "decline", "decline-")
    # Then the browser lands on failureBackLink, the setup FAILED and no card is saved
    assert landed == FAIL
    settled = wait_for_setup(local_stack, http, setup["id"])
    assert settled["status"] == "FAILED", settled
    assert settled.get("cardId") is None
    status, cards = call(local_stack, http, "GET", f"/accounts/{account}/cards")
    assert status == 200, cards
    assert [c for c in cards["data"] if c.get("setupId") == setup["id"]] == []
