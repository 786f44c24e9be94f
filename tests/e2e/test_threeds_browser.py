"""3-D Secure in a real browser: headless Chromium (Debian's, driven by Python playwright) against
the local stack over HTTP (local API Gateway, DynamoDB Local, moto, the ePay simulator).

The merchant's backLink/failureBackLink are https URLs of a shop that does not exist: the browser
intercepts that host and answers a tiny page, so the test reads where the customer landed.
Screenshots of every page the customer sees go to test-artifacts/3ds/.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local.run import LocalStack
from tests.e2e.browser import TIMEOUT_MS, require_chromium

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "3ds"
THREE_DS_CARD = "c0000000-0000-4000-8000-000000000003"
SHOP = "https://shop.example.kz"
BACK = f"{SHOP}/pay/done?order=42"
FAIL = f"{SHOP}/pay/failed?order=42"

require_chromium()


def create_charge(stack: LocalStack, http: urllib3.PoolManager) -> dict[str, Any]:
    body = {
        "amount": 4990.00,
        "currency": "KZT",
        "cardId": THREE_DS_CARD,
        "accountId": "customer-42",
        "description": "Заказ 42 / Order 42",
        "language": "kaz",
        "backLink": BACK,
        "failureBackLink": FAIL,
    }
    answer = http.request(
        "POST",
        f"{stack.url}/charges",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())},
    )
    assert answer.status == 201, answer.data
    charge: dict[str, Any] = json.loads(answer.data)
    assert charge["status"] == "REQUIRES_3DS"
    assert charge["nextAction"]["type"] == "redirect"
    return charge


def get_charge(stack: LocalStack, http: urllib3.PoolManager, charge_id: str) -> dict[str, Any]:
    answer = http.request("GET", f"{stack.url}/charges/{charge_id}")
    assert answer.status == 200
    charge: dict[str, Any] = json.loads(answer.data)
    return charge


def walk_3ds(
    stack: LocalStack, browser: Any, charge: dict[str, Any], button: str, label: str = ""
) -> str:
    """Open nextAction.url, let the page post to the ACS, press `button`; the landing URL."""
    label = label or button
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
    # Hold the ACS request until the redirect page is on screen, to photograph it.
    acs_url = stack.simulator.acs_url if stack.simulator is not None else None
    assert acs_url is not None
    held: list[Any] = []
    page.route(acs_url, lambda route: held.append(route))
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        response = page.goto(charge["nextAction"]["url"], wait_until="commit")
        assert response is not None
        assert response.status == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        for _ in range(TIMEOUT_MS // 50):  # the form posts itself on load (no click)
            if held:
                break
            page.wait_for_timeout(50)
        assert held, "the 3DS page did not post to the ACS by itself"
        assert held[0].request.method == "POST"
        posted = urllib.parse.parse_qs(held[0].request.post_data or "")
        assert set(posted) == {"PaReq", "MD", "TermUrl"}
        assert posted["TermUrl"] == [f"{stack.url}/charges/{charge['id']}/3ds/return"]
        # Playwright's own screenshot waits for the pending navigation; DevTools' does not.
        shot = context.new_cdp_session(page).send("Page.captureScreenshot", {"format": "png"})
        (ARTIFACTS / f"{label}-1-redirect-page.png").write_bytes(base64.b64decode(shot["data"]))
        page.unroute(acs_url)
        held[0].continue_()

        # The issuer's page (the simulator's ACS)
        page.wait_for_selector(f"#{button}")
        page.screenshot(path=str(ARTIFACTS / f"{label}-2-acs-page.png"))
        page.click(f"#{button}")

        # TermUrl answers 303 to the merchant's link
        page.wait_for_url(f"{SHOP}/**")
        page.wait_for_selector("#shop")
        page.screenshot(path=str(ARTIFACTS / f"{label}-3-back-at-shop.png"))
        assert landed
        # And the browser enforced our CSP without refusing anything we need
        assert not [m for m in console if "Content Security Policy" in m], console
        return str(page.url)
    finally:
        context.close()


def test_customer_approves_3ds_and_lands_on_back_link_captured(
    local_stack: LocalStack, browser: Any, http: urllib3.PoolManager
) -> None:
    # Given a charge of the simulator's 3DS card
    charge = create_charge(local_stack, http)
    # When the customer opens nextAction.url and approves on the issuer's page
    landed = walk_3ds(local_stack, browser, charge, "approve")
    # Then the browser lands on backLink with the charge id and CAPTURED
    assert landed.startswith(f"{SHOP}/pay/done?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(landed).query))
    assert query == {"order": "42", "chargeId": charge["id"], "status": "CAPTURED"}
    # And the API agrees, and ePay holds the money as taken
    final = get_charge(local_stack, http, charge["id"])
    assert final["status"] == "CAPTURED"
    assert final["nextAction"] is None
    assert local_stack.simulator.ledger[charge["invoiceId"]].status_name == "CHARGE"


def test_customer_fails_3ds_and_lands_on_failure_back_link_declined(
    local_stack: LocalStack, browser: Any, http: urllib3.PoolManager
) -> None:
    charge = create_charge(local_stack, http)
    landed = walk_3ds(local_stack, browser, charge, "fail")
    assert landed.startswith(f"{SHOP}/pay/failed?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(landed).query))
    assert query == {"order": "42", "chargeId": charge["id"], "status": "DECLINED"}
    final = get_charge(local_stack, http, charge["id"])
    assert final["status"] == "DECLINED"
    assert final["error"]["category"] == "authentication"


def test_the_page_link_works_once(
    local_stack: LocalStack, browser: Any, http: urllib3.PoolManager
) -> None:
    # Given a customer who already went through the page
    charge = create_charge(local_stack, http)
    walk_3ds(local_stack, browser, charge, "approve", "reopen")
    # When the link is opened again (history, a forwarded URL)
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(charge["nextAction"]["url"])
        # Then it is a bare 404
        assert response is not None
        assert response.status == 404
        page.screenshot(path=str(ARTIFACTS / "reopen-404.png"))
    finally:
        context.close()
