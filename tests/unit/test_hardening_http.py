"""Hardening of the HTTP edge: JSON only as application/json, bodies that are Unicode text, path
ids checked before any read, and headers (Location) that are always printable ASCII."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payments.charges.model import CaptureMode, Charge, ChargeStatus
from payments.charges.threeds import Finish, with_query
from payments.errors import ValidationError
from payments.http import pages
from payments.http.bodies import (
    UnsupportedMediaTypeError,
    parse_json_body,
    require_json_content_type,
)
from payments.http.router import Reply, Request, Router
from payments.shared.payer import Payer

CHARGE_ID = "ch_" + "0123456789abcdef" * 2


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "httpMethod": "GET",
        "resource": "/charges/{chargeId}",
        "pathParameters": {"chargeId": CHARGE_ID},
        "headers": {"Content-Type": "application/json"},
        "body": None,
    }
    event.update(changes)
    return event


# ----------------------------------------------------------------- 6. content types


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON", "application/json; charset=utf-8",
     "application/json;charset=UTF-8", 'application/json; charset="utf-8"'],
)  # fmt: skip
def test_application_json_is_accepted_with_a_utf8_charset(content_type: str) -> None:
    require_json_content_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "text/json",
     "application/json-patch+json", "application/jsonx", "multipart/form-data; boundary=x",
     "application/json; charset=latin-1", "application/json\ud800"],
)  # fmt: skip
def test_other_content_types_are_415_naming_the_header(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        require_json_content_type(content_type)
    assert caught.value.http_status == 415
    assert caught.value.code == "unsupported_media_type"
    assert set(caught.value.fields) == {"Content-Type"}


def test_a_json_body_is_read_only_when_declared_json_and_no_body_needs_no_type() -> None:
    # Given a JSON body sent as text/plain / Then the route never reads it
    request = Request.from_event(
        _event(headers={"Content-Type": "text/plain"}, body='{"amount": 1}')
    )
    with pytest.raises(UnsupportedMediaTypeError):
        request.json_body()
    # Given no body at all (a capture of the whole amount) / Then no type is needed
    assert Request.from_event(_event(headers={})).json_body(required=False) is None
    # Given the type in any header case / Then the body is read
    request = Request.from_event(
        _event(headers={"content-type": "application/json"}, body='{"amount": 1.5}')
    )
    assert request.json_body() == {"amount": Decimal("1.5")}


# ----------------------------------------------------------------- 2. lone surrogates


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        ('{"description": "\\ud800"}', {"description"}),
        ('{"description": "ok", "name": "a\\udfffb"}', {"name"}),
        ('{"interval": {"unit": "\\ud800"}}', {"interval"}),
        ('{"tags": ["\\udc00"]}', {"tags"}),
        ('{"\\ud800": 1}', {"body"}),
        ('["\\ud800"]', set()),
    ],
)
def test_json_strings_that_are_not_unicode_text_are_refused(raw: str, fields: set[str]) -> None:
    # Given JSON that spells a lone UTF-16 surrogate (valid JSON, but no Unicode text)
    with pytest.raises(ValidationError) as caught:
        parse_json_body(raw)
    # Then it is a 400 naming the top-level field that holds it
    assert set(caught.value.fields) == fields


def test_surrogate_pairs_are_text() -> None:
    assert parse_json_body('{"description": "\\ud83d\\ude00"}') == {"description": "😀"}


def test_a_proxy_body_holding_a_lone_surrogate_is_a_400_not_an_encoding_error() -> None:
    request = Request.from_event(_event(body='{"description": "\ud800"}'))
    with pytest.raises(ValidationError):
        request.json_body()


# ----------------------------------------------------------------- 2. path ids


def test_path_ids_of_another_shape_are_404_before_the_route_runs() -> None:
    # Given a router that knows the shape of charge ids
    ran: list[str] = []
    router = Router(path_ids={"chargeId": lambda value: value == CHARGE_ID})

    @router.route("GET", "/charges/{chargeId}")
    def read(request: Request, _context: Any) -> Reply:
        ran.append(request.path_params["chargeId"])
        return Reply(200, "{}")

    # When an id too long for a DynamoDB key, or of another shape, is asked for
    for bad in ("x" * 2000, CHARGE_ID + "\n", "", "ch_missing"):
        answer = router.resolve(_event(pathParameters={"chargeId": bad}), _Context())
        # Then it is a 404 not_found, and the route (so the store) never ran
        assert answer["statusCode"] == 404
        assert json.loads(answer["body"]) == {
            "error": {"code": "not_found", "message": "no such charge"}
        }
    assert ran == []
    assert router.resolve(_event(), _Context())["statusCode"] == 200
    assert ran == [CHARGE_ID]


# ----------------------------------------------------------------- 3. Location and HSTS


def _finish(back_link: str, status: ChargeStatus = ChargeStatus.CAPTURED) -> Finish:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    charge = Charge(
        id=CHARGE_ID,
        invoice_id="000000042",
        status=status,
        amount=Decimal("10.00"),
        currency="KZT",
        account_id="customer-42",
        card_id="c0000000-0000-4000-8000-000000000001",
        description="Order 42",
        capture=CaptureMode.AUTO,
        recurrent=True,
        language="rus",
        idempotency_key="k",
        request_hash="h",
        secret_hash_digest="d",
        created_at=now,
        updated_at=now,
        payer=Payer(back_link=back_link),
    )
    return Finish(charge, with_query(back_link, chargeId=charge.id, status=status.value))


def _printable_ascii(value: str) -> bool:
    return all(0x21 <= ord(c) <= 0x7E for c in value)


@pytest.mark.parametrize(
    "back_link",
    [
        "https://shop.example.kz/done?emoji=😀",
        "https://shop.example.kz/done\u2028x",
        "https://shop.example.kz/done\x85",
        "https://shop.example.kz/a b\r\nSet-Cookie: x=y",
        "https://магазин.kz/оплата",
        "https://shop.example.kz/\ud800",
    ],
)
def test_the_location_header_is_printable_ascii_whatever_the_stored_link(back_link: str) -> None:
    # Given a charge whose stored back link holds raw non-ASCII or control characters
    page = pages.finish_page(_finish(back_link))
    # Then the redirect's Location is percent-encoded printable ASCII (no dropped connection)
    location = page.headers["Location"]
    assert page.status == 303
    assert _printable_ascii(location), location
    assert location.startswith("https://")
    assert f"chargeId={CHARGE_ID}" in location


def test_an_international_host_becomes_its_idna_form_in_the_location() -> None:
    page = pages.finish_page(_finish("https://магазин.kz/done"))
    assert page.headers["Location"].startswith("https://xn--80aairftm.kz/done?")


def test_with_query_keeps_the_merchants_escapes_byte_for_byte() -> None:
    url = with_query("https://shop.kz/r?sig=%FF%2B+x&status=old", chargeId=CHARGE_ID, status="OK")
    assert url == f"https://shop.kz/r?sig=%FF%2B+x&chargeId={CHARGE_ID}&status=OK"


def test_every_customer_facing_page_keeps_the_browser_on_https() -> None:
    for page in (
        pages.finish_page(_finish("https://shop.example.kz/done")),
        pages.error_page(404),
        pages.error_page(400),
        pages.error_page(503),
    ):
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
        assert all(_printable_ascii(v.replace(" ", "")) for v in page.headers.values())
