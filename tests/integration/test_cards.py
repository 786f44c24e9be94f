"""Saved cards: card setups through ePay's page (the simulator's widget stand-in), the postLink
and the reconciler settling them, the account's card list, removal, and charges refusing removed
cards. The cards, card page, postLink, charges and reconciler functions run in-process on real
API Gateway events against DynamoDB Local and the simulator."""

from __future__ import annotations

import copy
import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.epay_sim.cards import TEST_CLIENT_ID, TEST_CLIENT_SECRET, TEST_TERMINAL_ID
from local.epay_sim.payform_client import submit_payment
from payments import bootstrap
from payments.shared.clock import utc_now
from tests.integration.conftest import (
    EVENTS,
    Answer,
    Context,
    Stack,
    create_event,
    get_event,
    item_charge_id,
    load_event,
    load_function,
    merchant_event,
)
from tests.integration.test_postlink import Receiver

ACCOUNT = "customer-42"
BACK = "https://shop.example/cards/saved"
FAILED = "https://shop.example/cards/failed"
VERIFY = {"accountId": ACCOUNT, "mode": "verify", "backLink": BACK, "failureBackLink": FAILED}
PAY = {
    "accountId": ACCOUNT,
    "mode": "pay",
    "amount": 2500,
    "currency": "KZT",
    "description": "First order",
    "backLink": BACK,
}
LISTED_TEST_CARD = "c0000000-0000-4000-8000-000000000001"


class Clock:
    """The functions' clock (bootstrap.use_clock), moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Cards:
    charges: Stack
    receiver: Receiver
    clock: Clock

    @property
    def sim(self) -> Any:
        return self.charges.simulator

    def call(self, function: str, event: dict[str, Any]) -> Answer:
        handler = load_function(function).lambda_handler
        return Stack(self.charges.table, self.charges.dynamodb, self.sim, handler).invoke(event)

    def create(self, body: Any, key: str | None = "setup-1", raw: str | None = None) -> Answer:
        text = raw if raw is not None else json.dumps(body)
        return self.call("cards", merchant_event("POST", "/card-setups", raw=text, key=key))

    def setup(self, setup_id: str) -> dict[str, Any]:
        event = merchant_event("GET", "/card-setups/{setupId}", setupId=setup_id)
        answer = self.call("cards", event)
        assert answer.status == 200, answer.raw
        return dict(answer.body)

    def page(self, url: str) -> tuple[int, dict[str, str], str]:
        """GET the customer's page at `url` (as the browser would) through the page function."""
        match = re.search(r"/card-setups/(cs_[0-9a-f]+)/page\?token=([A-Za-z0-9_-]+)$", url)
        assert match, url
        event = load_event("card_pages/open-page.json")
        event["path"] = f"/card-setups/{match[1]}/page"
        event["pathParameters"] = {"setupId": match[1]}
        event["queryStringParameters"] = {"token": match[2]}
        event["multiValueQueryStringParameters"] = {"token": [match[2]]}
        result = load_function("card_pages").lambda_handler(event, Context())
        headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        return result["statusCode"], headers, result.get("body") or ""

    def cards(self, account: str = ACCOUNT, **query: str) -> Answer:
        event = merchant_event("GET", "/accounts/{accountId}/cards", query=query, accountId=account)
        return self.call("cards", event)

    def remove(self, card_id: str, account: str = ACCOUNT) -> Answer:
        event = merchant_event(
            "DELETE", "/accounts/{accountId}/cards/{cardId}", accountId=account, cardId=card_id
        )
        return self.call("cards", event)

    def charge(self, card_id: str, key: str, account: str = ACCOUNT) -> Answer:
        body = {
            "amount": 1000,
            "currency": "KZT",
            "cardId": card_id,
            "accountId": account,
            "description": "Order",
        }
        return self.charges.invoke(create_event(body, key))

    def reconcile(self, after: timedelta) -> dict[str, Any]:
        self.clock.now += after
        event = json.loads((EVENTS / "reconciler/scheduled.json").read_text())
        summary: dict[str, Any] = load_function("reconciler").lambda_handler(event, Context(300))
        return summary

    def items(self, sk: str) -> list[dict[str, Any]]:
        return [i for i in self.charges.items() if i["sk"]["S"] == sk]


@pytest.fixture
def cs(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cards]:
    receiver = Receiver(load_function("postlink").lambda_handler).start()
    monkeypatch.setenv("PUBLIC_BASE_URL", receiver.url)
    monkeypatch.setenv("EPAY_WIDGET_URL", stack.simulator.widget_url)
    bootstrap.reset()
    clock = Clock()
    bootstrap.use_clock(clock)
    yield Cards(stack, receiver, clock)
    bootstrap.use_clock(utc_now)
    receiver.stop()


def payment_object(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="payment-object">(.*?)</script>', html)
    assert match, html
    value: dict[str, Any] = json.loads(match[1])
    return value


def opened(cs: Cards, body: dict[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A created setup and the payment object its page hands to ePay's widget."""
    created = cs.create(body, key)
    assert created.status == 201, created.raw
    status, _headers, html = cs.page(created.body["url"])
    assert status == 200, html
    return dict(created.body), payment_object(html)


def wait_for_status(cs: Cards, setup_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The setup once the simulator's postLink (delivered over HTTP) has settled it."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while datetime.now(UTC) < deadline:
        setup = cs.setup(setup_id)
        if setup["status"] != "PENDING":
            return setup
    raise AssertionError(f"setup {setup_id} stayed PENDING")


def wait_for_charge(cs: Cards, charge_id: str, status: str) -> dict[str, Any]:
    """The charge once it reached `status` (a postLink settles it on another thread)."""
    event = get_event(charge_id)
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while datetime.now(UTC) < deadline:
        charge: dict[str, Any] = cs.charges.invoke(copy.deepcopy(event)).body
        if charge["status"] == status:
            return charge
    raise AssertionError(f"charge {charge_id} never became {status}")


# ----------------------------------------------------------------------------- the whole life


def test_a_verified_card_is_saved_listed_charged_then_removed_and_refused(cs: Cards) -> None:
    # Given a verifying setup
    created = cs.create(VERIFY, "verify-1")
    assert created.status == 201, created.raw
    assert created.headers["location"] == f"/card-setups/{created.body['id']}"
    assert (created.body["status"], created.body["mode"]) == ("PENDING", "verify")
    assert created.body["url"].startswith(f"{cs.receiver.url}/card-setups/")
    assert cs.sim.requests("token") == []  # nothing reaches ePay before the page opens

    # When the customer opens the page
    status, headers, html = cs.page(created.body["url"])
    # Then it loads ePay's widget with a token bound to this invoice, saving the card
    assert status == 200
    assert f'<script src="{cs.sim.widget_url}"></script>' in html
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    origin = cs.sim.widget_url.split("/payform/")[0]
    assert "script-src 'sha256-" in headers["content-security-policy"]
    assert f"form-action {origin}" in headers["content-security-policy"]
    assert "<noscript>" in html
    payment = payment_object(html)
    assert payment["invoiceId"] == created.body["invoiceId"]
    assert (payment["amount"], payment["currency"]) == (0, "USD")
    assert (payment["paymentType"], payment["cardSave"]) == ("cardVerification", True)
    assert payment["accountId"] == ACCOUNT
    assert payment["postLink"] == f"{cs.receiver.url}/epay/postlink"
    assert payment["auth"]["access_token"]
    (token_call,) = cs.sim.requests("token")
    assert token_call.form["invoiceID"] == created.body["invoiceId"]
    assert token_call.form["secret_hash"]  # chosen per setup, only its digest is stored
    item = cs.items("SETUP")[0]
    assert token_call.form["secret_hash"] not in json.dumps(item)
    # And the page is single-use
    assert cs.page(created.body["url"])[0] == 404
    assert cs.setup(created.body["id"])["url"] is None

    # When the customer approves on ePay's page
    location = submit_payment(cs.sim.payform_url, payment, "approve", "4400430000000178")
    # Then ePay sends them back to the merchant, and its postLink saves the card
    assert location == BACK
    setup = wait_for_status(cs, created.body["id"])
    assert setup["status"] == "SUCCEEDED"
    card_id = setup["cardId"]
    listed = cs.cards().body["data"]
    assert [c["id"] for c in listed] == [card_id]
    assert listed[0]["status"] == "ACTIVE"
    assert listed[0]["source"] == "setup"
    assert listed[0]["setupId"] == created.body["id"]
    assert listed[0]["mask"]
    assert listed[0]["type"]

    # When the merchant charges the saved card / Then it is charged like any other
    charged = cs.charge(card_id, "order-1")
    assert (charged.status, charged.body["status"]) == (201, "CAPTURED")
    removed_and_refused(cs, card_id)


def removed_and_refused(cs: Cards, card_id: str) -> None:
    """Remove a card, then check that it is never charged again."""
    # When the card is removed / Then ePay deactivates it once and it is REMOVED
    removed = cs.remove(card_id)
    assert (removed.status, removed.body["status"]) == (200, "REMOVED")
    assert len(cs.sim.requests("deactivate")) == 1
    again = cs.remove(card_id)
    assert (again.status, again.body["status"]) == (200, "REMOVED")
    assert len(cs.sim.requests("deactivate")) == 1

    # When the merchant charges it again / Then it is refused before any write or ePay call
    auths, charge_items = len(cs.sim.requests("auth")), len(cs.items("CHARGE"))
    refused = cs.charge(card_id, "order-2")
    assert (refused.status, refused.body["error"]["code"]) == (409, "card_removed")
    assert (len(cs.sim.requests("auth")), len(cs.items("CHARGE"))) == (auths, charge_items)
    # And another account may not charge it either
    other = cs.charge(card_id, "order-3", account="someone-else")
    assert (other.status, other.body["error"]["code"]) == (422, "card_account_mismatch")


def test_a_paying_setup_becomes_a_charge_like_any_other(cs: Cards) -> None:
    # Given a setup that pays 2500 KZT and saves the card
    created, payment = opened(cs, PAY, "pay-1")
    assert "paymentType" not in payment
    assert (payment["amount"], payment["currency"]) == (2500, "KZT")
    # When the customer pays
    assert submit_payment(cs.sim.payform_url, payment, "approve") == BACK
    setup = wait_for_status(cs, created["id"])
    # Then the setup names its card and its charge, which ePay held and we captured
    assert setup["status"] == "SUCCEEDED"
    assert setup["chargeId"]
    assert setup["cardId"]
    charge = wait_for_charge(cs, setup["chargeId"], "CAPTURED")
    assert charge["invoiceId"] == created["invoiceId"]
    assert charge["amount"] == 2500
    entry = cs.sim.ledger_entry(created["invoiceId"])
    assert entry is not None
    assert entry.status_name == "CHARGE"
    assert len(cs.sim.requests("charge")) == 1
    # And the card is listed for the account
    assert [c["id"] for c in cs.cards().body["data"]] == [setup["cardId"]]
    # And, like any charge, its write-once facts are on its invoice item, not its charge item
    invoice = next(i for i in cs.items("INVOICE") if i["setupId"]["S"] == created["id"])
    assert invoice["chargeId"]["S"] == setup["chargeId"]
    assert invoice["idempotencyKey"]["S"] == f"setup {created['id']}"
    item = next(i for i in cs.items("CHARGE") if item_charge_id(i) == setup["chargeId"])
    assert "idempotencyKey" not in item
    assert len(item["secretHashDigest"]["B"]) == 32


def test_a_declined_setup_fails_and_saves_nothing(cs: Cards) -> None:
    created, payment = opened(cs, VERIFY, "declined")
    assert submit_payment(cs.sim.payform_url, payment, "decline") == FAILED
    setup = wait_for_status(cs, created["id"])
    assert setup["status"] == "FAILED"
    assert setup["error"]["code"] == "484"
    assert setup["cardId"] is None
    assert cs.cards().body["data"] == []


# ----------------------------------------------------------------- postLinks, races, reconciler


def test_duplicate_postlinks_and_a_racing_check_save_one_card_and_one_charge(cs: Cards) -> None:
    # Given a paying setup whose postLink the test holds back
    cs.receiver.forward = False
    created, payment = opened(cs, PAY, "race")
    submit_payment(cs.sim.payform_url, payment, "approve")
    (delivery,) = cs.sim.wait_for_postlinks(1, timeout=5)
    event = load_event("postlink/postlink-success.json")
    event["body"] = json.dumps(delivery.payload)
    postlink = load_function("postlink").lambda_handler

    # When the same notification arrives five times at once, while the reconciler checks too
    def deliver(_: int) -> int:
        answer: int = postlink(copy.deepcopy(event), Context())["statusCode"]
        return answer

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(deliver, range(5)))
        cs.clock.now += timedelta(minutes=11)
        cs.reconcile(timedelta(0))
    # Then every delivery is answered 200, and one card and one charge exist
    assert answers == [200] * 5
    setup = cs.setup(created["id"])
    assert setup["status"] == "SUCCEEDED"
    assert len(cs.items("CARD")) == 1
    charges = cs.items("CHARGE")
    assert [item_charge_id(c) for c in charges] == [setup["chargeId"]]
    assert wait_for_charge(cs, setup["chargeId"], "CAPTURED")["amount"] == 2500
    assert len(cs.sim.requests("charge")) == 1


def test_a_forged_postlink_for_a_setup_is_refused_and_changes_nothing(cs: Cards) -> None:
    cs.receiver.forward = False
    created, payment = opened(cs, VERIFY, "forged")
    submit_payment(cs.sim.payform_url, payment, "approve")
    (delivery,) = cs.sim.wait_for_postlinks(1, timeout=5)
    event = load_event("postlink/postlink-success.json")
    event["body"] = json.dumps({**delivery.payload, "secret_hash": "guessed"})
    answer = load_function("postlink").lambda_handler(event, Context())
    assert answer["statusCode"] == 403
    assert cs.setup(created["id"])["status"] == "PENDING"
    assert cs.items("CARD") == []


def test_a_lost_postlink_is_settled_by_the_reconciler(
    cs: Cards, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given ePay saved the card but its postLink never arrived
    monkeypatch.setattr(cs.sim, "postlink_drop", True)
    created, payment = opened(cs, VERIFY, "lost")
    submit_payment(cs.sim.payform_url, payment, "approve")
    assert cs.setup(created["id"])["status"] == "PENDING"
    # When the reconciler runs after the first rung of its ladder
    summary = cs.reconcile(timedelta(minutes=11))
    # Then the status API settles it: the card is saved
    assert summary["setups"] == 1
    setup = cs.setup(created["id"])
    assert setup["status"] == "SUCCEEDED"
    assert [c["id"] for c in cs.cards().body["data"]] == [setup["cardId"]]


def test_an_abandoned_setup_expires_without_asking_epay(cs: Cards) -> None:
    created = cs.create(VERIFY, "abandoned").body
    statuses = len(cs.sim.requests("status"))
    cs.reconcile(timedelta(minutes=30))
    assert cs.setup(created["id"])["status"] == "PENDING"
    cs.reconcile(timedelta(minutes=31))
    setup = cs.setup(created["id"])
    assert (setup["status"], setup["error"]["code"]) == ("EXPIRED", "expired")
    assert len(cs.sim.requests("status")) == statuses
    # And its page no longer opens
    assert cs.page(created["url"])[0] == 404


# --------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VERIFY, "backLink": None}, "backLink"),
        ({**VERIFY, "mode": "charge"}, "mode"),
        ({**VERIFY, "amount": 100}, "amount"),
        ({**PAY, "amount": None}, "amount"),
        ({**PAY, "currency": "XXX"}, "currency"),
        ({**VERIFY, "backLink": "http://shop.example/"}, "backLink"),
        ({**VERIFY, "accountId": "x" * 101}, "accountId"),
        ({**VERIFY, "extra": 1}, "extra"),
    ],
)
def test_invalid_setups_are_400_and_write_nothing(
    cs: Cards, body: dict[str, Any], field: str
) -> None:
    before = len(cs.charges.items())
    answer = cs.create({k: v for k, v in body.items() if v is not None}, "bad")
    assert answer.status == 400
    assert field in answer.body["error"]["fields"]
    assert len(cs.charges.items()) == before


def test_malformed_json_and_a_missing_key_are_400(cs: Cards) -> None:
    assert cs.create(None, "k", raw="{not json").status == 400
    assert cs.create(VERIFY, None).status == 400
    assert cs.charges.items() == []


def test_a_setup_is_created_once_per_idempotency_key(cs: Cards) -> None:
    first = cs.create(VERIFY, "once")
    again = cs.create(VERIFY, "once")
    assert (again.status, again.body["id"]) == (200, first.body["id"])
    assert again.headers["idempotent-replayed"] == "true"
    other = cs.create({**VERIFY, "backLink": "https://shop.example/other"}, "once")
    assert other.status == 422
    assert len(cs.items("SETUP")) == 1


def test_a_wrong_page_token_is_404_and_does_not_use_up_the_page(cs: Cards) -> None:
    created = cs.create(VERIFY, "tokens").body
    forged = re.sub(r"token=.*$", "token=" + "A" * 43, created["url"])
    assert cs.page(forged)[0] == 404
    assert cs.page(created["url"])[0] == 200


# ------------------------------------------------------------------------ the card list


def test_refresh_adds_cards_saved_elsewhere_and_pages_newest_first(cs: Cards) -> None:
    # Given an account with no card in our table / When the list is refreshed from ePay
    refreshed = cs.cards(refresh="true")
    # Then ePay's cards are added, marked as found there
    ids = [c["id"] for c in refreshed.body["data"]]
    assert LISTED_TEST_CARD in ids
    assert {c["source"] for c in refreshed.body["data"]} == {"epay"}
    assert all(c["listedAtEpay"] for c in refreshed.body["data"])
    # And the list pages with an opaque cursor, each card once
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = cs.cards(limit="2", **({"cursor": cursor} if cursor else {})).body
        seen += [c["id"] for c in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    # And a cursor of another account is refused
    first = cs.cards(limit="1").body["nextCursor"]
    assert cs.cards("someone-else", cursor=first).status == 400
    assert cs.cards(limit="0").status == 400


def test_refresh_marks_a_card_epay_no_longer_lists(cs: Cards) -> None:
    # Given the account's cards known from ePay's list
    cs.cards(refresh="true")
    # When a card is deactivated at ePay outside the service (in its cabinet, say)
    deactivated = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{cs.sim.api_url}/card/deactivate/{LISTED_TEST_CARD}",
                method="POST",
                headers={"Authorization": f"Bearer {token(cs)}"},
            ),
            timeout=5,
        ).read()
        or b"{}"
    )
    assert deactivated == {}
    # Then the next refresh marks it, and leaves it to the merchant to remove
    card = next(c for c in cs.cards(refresh="true").body["data"] if c["id"] == LISTED_TEST_CARD)
    assert (card["status"], card["listedAtEpay"]) == ("ACTIVE", False)
    others = [c for c in cs.cards().body["data"] if c["id"] != LISTED_TEST_CARD]
    assert all(c["listedAtEpay"] for c in others)


def token(cs: Cards) -> str:
    """A terminal token from the simulator's OAuth (as any ePay client gets one)."""
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "scope": "payment",
            "client_id": TEST_CLIENT_ID,
            "client_secret": TEST_CLIENT_SECRET,
            "terminal": TEST_TERMINAL_ID,
        }
    ).encode()
    with urllib.request.urlopen(cs.sim.oauth_url, data=form, timeout=5) as answer:
        value: str = json.loads(answer.read())["access_token"]
    return value


def test_racing_removals_deactivate_at_epay_once(cs: Cards) -> None:
    cs.cards(refresh="true")

    def remove(_: int) -> int:
        return cs.remove(LISTED_TEST_CARD).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(remove, range(8)))
    assert set(statuses) <= {200, 409}
    assert len(cs.sim.requests("deactivate")) == 1
    assert cs.remove(LISTED_TEST_CARD).body["status"] == "REMOVED"
    assert cs.remove(LISTED_TEST_CARD, account="someone-else").status == 404
