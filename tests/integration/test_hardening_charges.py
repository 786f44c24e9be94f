"""Hardening of the charge routes through the real handlers (API Gateway events, DynamoDB Local,
the simulator): every bad input is a 4xx naming what is wrong, nothing is written and ePay is not
called; the 3-D Secure return's Location is printable ASCII whatever link it carries."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.integration.conftest import (
    Answer,
    Context,
    Stack,
    at_path,
    capture_event,
    create_event,
    get_event,
    load_event,
    load_function,
    merchant_event,
)
from tests.integration.test_threeds import (
    ThreeDS,
    acs_pares,
    page_event,
    query_of,
    return_event,
    start_3ds,
    threeds,
)

__all__ = ["threeds"]  # the fixture, imported from the 3DS tests rather than copied

APPROVE = "c0000000-0000-4000-8000-000000000001"
BODY: dict[str, Any] = {
    "amount": 1500,
    "currency": "KZT",
    "cardId": APPROVE,
    "accountId": "customer-42",
    "description": "Order 42",
}
LONG_ID = "ch_" + "f" * 4000  # past DynamoDB's 2048-byte partition key
NEWLINE_ID = "ch_" + "0" * 32 + "\n"


def raw_body(**fields: str) -> str:
    """BODY with some fields given as raw JSON text (numbers json.dumps cannot write, escapes)."""
    parts = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in BODY.items() if k not in fields]
    parts += [f"{json.dumps(k)}: {v}" for k, v in fields.items()]
    return "{" + ", ".join(parts) + "}"


def assert_refused(stack: Stack, answer: Answer, status: int, code: str, field: str) -> None:
    """A 4xx in the documented shape naming `field`; no item written, no call to ePay."""
    assert answer.status == status, answer.raw
    assert set(answer.body) == {"error"}
    error = answer.body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert field in error.get("fields", {}), error
    assert "DynamoDB" not in answer.raw
    assert stack.items() == []
    assert stack.simulator.journal == []


# ------------------------------------------------------------------ POST /charges: the body


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        # 1. a trailing newline is not accepted as part of a value
        ("invoiceId", '"796507934543\\n"'),
        ("invoiceIdAlt", '"796507934543\\n"'),
        ("cardId", f'"{APPROVE}\\n"'),
        ("name", '"Ivan Petrov\\n"'),
        ("email", '"ivan@example.kz\\n"'),
        ("phone", '"77001234567\\n"'),
        # 2. amounts Decimal.quantize cannot hold
        ("amount", "1e26"),
        ("amount", "1E+400"),
        ("amount", "1" + "0" * 30),
        # 2. a list or an object where one of a set of strings is expected
        ("currency", '["KZT"]'),
        ("currency", '{"code": "KZT"}'),
        ("language", '["rus"]'),
        ("capture", '{"mode": "auto"}'),
        # 2. strings that are not Unicode text
        ("description", '"Order \\ud800"'),
        ("accountId", '"customer-\\udfff"'),
        ("name", '"\\udc00"'),
        # 3. links that cannot go into a Location header as they are
        ("backLink", '"https://shop.example.kz/done?x=\\ud83d\\ude00"'),
        ("backLink", '"https://shop.example.kz/done\\u2028"'),
        ("backLink", '"https://shop.example.kz/done\\u0085"'),
        ("backLink", '"https://user:pw@shop.example.kz/done"'),
        ("failureBackLink", '"https://\\u043c\\u0430\\u0433\\u0430\\u0437\\u0438\\u043d.kz/"'),
        ("failureBackLink", '"https://shop.example.kz/a b"'),
    ],
)
def test_a_bad_field_is_a_400_naming_it_with_no_write_and_no_epay_call(
    stack: Stack, field: str, raw: str
) -> None:
    # When a charge arrives with one bad field
    answer = stack.invoke(create_event(None, "hardening-1", raw=raw_body(**{field: raw})))
    # Then it is a 400 naming that field; nothing is stored and ePay hears nothing
    assert_refused(stack, answer, 400, "validation_error", field)


def test_a_trailing_newline_in_the_idempotency_key_is_refused(stack: Stack) -> None:
    answer = stack.invoke(create_event(BODY, "order-42\n"))
    assert_refused(stack, answer, 400, "validation_error", "Idempotency-Key")


def test_the_invoice_id_is_stored_and_sent_exactly_as_given(stack: Stack) -> None:
    # Given a valid invoice id / When the charge is made
    answer = stack.invoke(create_event({**BODY, "invoiceId": "796507934543"}, "exact"))
    # Then the store and ePay have that very string
    assert answer.status == 201, answer.raw
    assert answer.body["invoiceId"] == "796507934543"
    (auth,) = stack.auths()
    assert auth.json["invoiceId"] == "796507934543"


# ------------------------------------------------------------------ POST /charges: the type


def with_content_type(event: dict[str, Any], content_type: str | None) -> dict[str, Any]:
    headers = {k: v for k, v in event["headers"].items() if k != "content-type"}
    if content_type is not None:
        headers["content-type"] = content_type
    event["headers"] = headers
    return event


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        None,
        "application/json; charset=latin-1",
        "application/jsonp",
    ],
)
def test_a_json_body_not_declared_as_json_is_415(stack: Stack, content_type: str | None) -> None:
    # When a valid JSON charge is sent with another Content-Type (or none)
    event = with_content_type(create_event(BODY, "typed"), content_type)
    # Then it is refused as an unsupported media type, before anything is read or written
    answer = stack.invoke(event)
    assert_refused(stack, answer, 415, "unsupported_media_type", "Content-Type")


def test_json_with_a_charset_in_any_case_is_accepted(stack: Stack) -> None:
    event = with_content_type(create_event(BODY, "typed"), "Application/JSON; Charset=UTF-8")
    assert stack.invoke(event).status == 201


# ------------------------------------------------------------------ capture


def authorized_charge(stack: Stack) -> dict[str, Any]:
    answer = stack.invoke(create_event({**BODY, "capture": "manual"}, "to-capture"))
    assert answer.status == 201, answer.raw
    assert answer.body["status"] == "AUTHORIZED"
    result: dict[str, Any] = answer.body
    return result


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code", "field"),
    [
        ('{"amount": 1e26}', "application/json", 400, "validation_error", "amount"),
        ('{"amount": 1E+400}', "application/json", 400, "validation_error", "amount"),
        ('{"amount": ["1"]}', "application/json", 400, "validation_error", "amount"),
        ('{"amount": 1000}', "text/plain", 415, "unsupported_media_type", "Content-Type"),
    ],
)
def test_a_bad_capture_changes_nothing_and_calls_no_one(
    stack: Stack, raw: str, content_type: str, status: int, code: str, field: str
) -> None:
    # Given an AUTHORIZED charge
    charge = authorized_charge(stack)
    items, calls = stack.items(), len(stack.simulator.journal)
    # When a capture arrives with a bad amount or type
    event = with_content_type(capture_event(charge["id"]), content_type)
    event["body"] = raw
    answer = stack.invoke(event)
    # Then it is refused by name; the charge and ePay are untouched
    assert answer.status == status, answer.raw
    assert answer.body["error"]["code"] == code
    assert field in answer.body["error"]["fields"]
    assert stack.items() == items
    assert len(stack.simulator.journal) == calls


def test_a_capture_without_a_body_needs_no_content_type(stack: Stack) -> None:
    charge = authorized_charge(stack)
    event = with_content_type(capture_event(charge["id"]), None)
    answer = stack.invoke(event)
    assert answer.status == 200, answer.raw
    assert answer.body["status"] == "CAPTURED"


# ------------------------------------------------------------------ path ids


def path_event(template: str, charge_id: str) -> dict[str, Any]:
    event = load_event(template)
    resource = event["routeKey"].split(" ", 1)[1]
    return at_path(event, resource.replace("{chargeId}", charge_id), chargeId=charge_id)


@pytest.mark.parametrize("charge_id", [LONG_ID, NEWLINE_ID, "", "ch_doesnotexist"])
@pytest.mark.parametrize(
    "template", ["charges/get-charge.json", "charges/capture-charge.json", "reconcile"]
)
def test_a_path_id_of_another_shape_is_a_404_before_any_read(
    stack: Stack, charge_id: str, template: str
) -> None:
    # Given an id too long for a DynamoDB key (the 500 named DynamoDB), or of another shape
    if template == "reconcile":
        event = merchant_event("POST", "/charges/{chargeId}/reconcile", chargeId=charge_id)
    else:
        event = path_event(template, charge_id)
    # When it is asked for / Then it is simply not found
    answer = stack.invoke(event)
    assert answer.status == 404, answer.raw
    assert answer.body == {"error": {"code": "not_found", "message": "no such charge"}}
    assert stack.simulator.journal == []


# ------------------------------------------------------------------ postLink keeps its types


def test_postlink_still_takes_json_whatever_its_content_type(stack: Stack) -> None:
    # Given ePay's JSON notification sent as text/plain (ePay's types are not ours to choose)
    event = with_content_type(load_event("postlink/postlink-success.json"), "text/plain")
    # When it arrives / Then it is read (an unknown invoice: 200, kept for review), not a 415
    answer = load_function("postlink").lambda_handler(event, Context())
    assert answer["statusCode"] == 200, answer


# ------------------------------------------------------------------ 3-D Secure: Location


def set_back_link(threeds: ThreeDS, charge_id: str, link: str) -> None:
    """Store a raw link on the charge, as an item written before links were validated."""
    threeds.stack.dynamodb.update_item(
        TableName=threeds.stack.table,
        Key={"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}},
        UpdateExpression="SET backLink = :b",
        ExpressionAttributeValues={":b": {"S": link}},
    )


def printable_ascii(value: str) -> bool:
    return all(0x21 <= ord(c) <= 0x7E for c in value)


@pytest.mark.parametrize(
    "link",
    [
        "https://shop.example.kz/done?emoji=😀",
        "https://shop.example.kz/done\u2028next",
        "https://shop.example.kz/done\x85",
        "https://магазин.kz/done page",
    ],
)
def test_the_3ds_return_location_is_printable_ascii_whatever_the_stored_link(
    threeds: ThreeDS, link: str
) -> None:
    # Given a 3DS charge whose stored backLink holds raw non-ASCII or control characters
    charge_id, fields, action = start_3ds(threeds, "raw-link")
    set_back_link(threeds, charge_id, link)
    # When the customer comes back from the bank, having paid
    form = {"PaRes": acs_pares(action, fields, "approve"), "MD": fields["MD"]}
    answer = threeds.call(return_event(charge_id, form))
    # Then the 303's Location is percent-encoded printable ASCII: the connection holds
    assert answer.status == 303
    location = answer.headers["location"]
    assert printable_ascii(location), location
    merchant_query = dict(parse_qsl(urlsplit(link).query))
    assert query_of(location) == {**merchant_query, "chargeId": charge_id, "status": "CAPTURED"}
    # And the page tells the browser to stay on https
    assert answer.headers["strict-transport-security"].startswith("max-age=")


@pytest.mark.parametrize("charge_id", [LONG_ID, NEWLINE_ID])
def test_3ds_routes_answer_a_bare_404_page_for_ids_of_another_shape(
    threeds: ThreeDS, charge_id: str
) -> None:
    for event in (
        page_event(charge_id, "x" * 43),
        return_event(charge_id, {"PaRes": "p", "MD": "m"}),
    ):
        page = threeds.call(event)
        assert page.status == 404
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "strict-transport-security" in page.headers
    assert threeds.stack.items() == []
    assert threeds.stack.simulator.journal == []


def test_a_charge_with_a_raw_back_link_is_refused_at_creation(stack: Stack) -> None:
    answer = stack.invoke(
        create_event({**BODY, "backLink": "https://shop.example.kz/😀"}, "raw-link")
    )
    assert_refused(stack, answer, 400, "validation_error", "backLink")
    assert stack.invoke(get_event("ch_" + "0" * 32)).status == 404
