"""Card setup requests, list cursors and the card setup page: pure rules, no sockets."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from payments.cards.model import SetupMode
from payments.cards.requests import (
    decode_cursor,
    encode_cursor,
    parse_list_query,
    parse_setup_request,
)
from payments.cards.setups import WidgetPage
from payments.errors import ValidationError
from payments.http.card_pages import widget_page

BACK = "https://shop.example/cards"
PAY_FIELDS = {"amount", "currency", "description"}


def test_verify_is_a_zero_usd_verification_whatever_is_left_out() -> None:
    request = parse_setup_request({"accountId": "a-1", "mode": "verify", "backLink": BACK})
    assert (request.mode, request.amount, request.currency) == (SetupMode.VERIFY, 0, "USD")
    assert request.description == "Card verification"


def test_pay_needs_money_and_keeps_it_exact() -> None:
    body = {
        "accountId": "a-1",
        "mode": "pay",
        "backLink": BACK,
        "amount": Decimal("10.50"),
        "currency": "KZT",
        "description": "First order",
    }
    request = parse_setup_request(body)
    assert (request.amount, request.currency) == (Decimal("10.50"), "KZT")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"mode": "verify", "backLink": BACK}, {"accountId"}),
        ({"accountId": "a", "mode": "verify", "backLink": BACK, "currency": "KZT"}, {"currency"}),
        (
            {"accountId": "a", "mode": "pay", "backLink": BACK},
            {"amount", "currency", "description"},
        ),
        ({"accountId": "a", "mode": ["verify"], "backLink": BACK}, {"mode"}),
        ({"accountId": "a", "mode": "verify", "backLink": "javascript:alert(1)"}, {"backLink"}),
    ],
)
def test_bad_setups_name_every_bad_field(body: dict[str, Any], fields: set[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_setup_request(body)
    assert set(caught.value.fields) == fields


def test_cursors_round_trip_and_belong_to_one_account() -> None:
    position = {"pk": "CARD#c-1", "sk": "CARD", "cardAccount": "a-1", "cardSort": "2027#c-1"}
    cursor = encode_cursor(position)
    assert decode_cursor(cursor, "a-1") == position
    assert decode_cursor(cursor, "a-2") is None
    assert decode_cursor("not-a-cursor", "a-1") is None
    assert parse_list_query({"cursor": cursor, "limit": "5"}, "a-1").limit == 5
    with pytest.raises(ValidationError):
        parse_list_query({"refresh": "yes", "page": "2"}, "a-1")


def test_the_page_escapes_what_it_hands_to_the_widget() -> None:
    # Given a payment object whose text tries to end the data block and run a script
    hostile = '</script><script>alert("x")</script> & <!--'
    page = WidgetPage(
        script_url="https://test-epay.epayment.kz/payform/payment-api.js",
        payment_object={"description": hostile, "amount": Decimal("0"), "cardSave": True},
        language="kaz",
        leave_url='https://shop.example/back?a="1"',
    )
    # When the page is rendered
    html = widget_page(page)
    # Then the object survives as data, inside one JSON block nothing can end early
    block = re.search(r'id="payment-object">(.*?)</script>', html.body)
    assert block is not None
    assert json.loads(block[1])["description"] == hostile
    assert html.body.count("<script") == 3  # the data block, ePay's script, our one-liner
    assert 'href="https://shop.example/back?a=%221%22"' in html.body
    # And the headers keep the page private and the widget to its own origin
    csp = html.headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in csp
    assert "https://test-epay.epayment.kz" in csp
    assert "default-src 'none'" in csp
    assert html.headers["Cache-Control"] == "no-store"
    assert '<html lang="kk">' in html.body
