"""Error mapping (status, code, message, fields, Retry-After, request id) and typed results."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from client_fakes import CHARGE_ID, FakeTransport, answer, charge_json, error
from epay_payments_client import (
    Conflict,
    Forbidden,
    Interval,
    InvalidRequest,
    NotFound,
    PaymentsApiError,
    PaymentsClient,
    ServerError,
    ServiceUnavailable,
    UnexpectedResponse,
    Unprocessable,
    ValidationFailed,
)
from epay_payments_client.errors import parse_retry_after
from epay_payments_client.transport import HttpResponse


def client_for(*script: HttpResponse) -> tuple[PaymentsClient, FakeTransport]:
    transport = FakeTransport(list(script))
    client = PaymentsClient.local(transport=transport, max_retries=0, sleep=lambda _s: None)
    return client, transport


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "validation_error", ValidationFailed),
        (413, "payload_too_large", ValidationFailed),
        (415, "unsupported_media_type", ValidationFailed),
        (403, "forbidden", Forbidden),
        (404, "not_found", NotFound),
        (409, "amount_not_refundable", Conflict),
        (422, "idempotency_key_reused", Unprocessable),
        (422, "card_account_mismatch", Unprocessable),
        (418, "teapot", InvalidRequest),
        (500, "internal_error", ServerError),
        (503, "gateway_unavailable", ServiceUnavailable),
    ],
)
def test_error_answers_become_typed_errors(
    status: int, code: str, kind: type[PaymentsApiError]
) -> None:
    client, _ = client_for(error(status, code, "what went wrong"))

    with pytest.raises(kind) as raised:
        client.get_charge(CHARGE_ID)

    assert raised.value.code == code
    assert raised.value.http_status == status
    assert raised.value.message == "what went wrong"
    assert str(raised.value) == f"{status} {code}: what went wrong"


def test_validation_errors_carry_fields_and_the_key() -> None:
    body = {
        "error": {
            "code": "validation_error",
            "message": "the request is invalid",
            "fields": {"amount": "must be greater than 0", "currency": "unknown currency"},
        }
    }
    client, _ = client_for(answer(400, body, {"x-amzn-RequestId": "req-1"}))

    with pytest.raises(ValidationFailed) as raised:
        client.create_charge(
            amount=0,
            currency="XXX",
            card_id="c",
            account_id="a",
            description="d",
            idempotency_key="key-1",
        )

    assert raised.value.fields == {
        "amount": "must be greater than 0",
        "currency": "unknown currency",
    }
    assert raised.value.request_id == "req-1"
    assert raised.value.idempotency_key == "key-1"


def test_retry_after_is_read_from_the_answer() -> None:
    client, _ = client_for(error(503, "invoice_space_exhausted", **{"Retry-After": "120"}))

    with pytest.raises(ServiceUnavailable) as raised:
        client.get_charge(CHARGE_ID)

    assert raised.value.retry_after == 120.0


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Sun, 06 Dec 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None) is None


def test_api_gateways_own_refusals_get_a_code() -> None:
    client, _ = client_for(
        answer(
            403,
            {"message": "Missing Authentication Token"},
            {"x-amzn-ErrorType": "MissingAuthenticationTokenException"},
        )
    )

    with pytest.raises(Forbidden) as raised:
        client.get_charge(CHARGE_ID)

    assert raised.value.code == "missing_authentication"
    assert raised.value.message == "Missing Authentication Token"


def test_a_body_that_is_not_json_still_maps_by_status() -> None:
    client, _ = client_for(answer(502, "<html>Bad Gateway</html>"))

    with pytest.raises(ServerError) as raised:
        client.get_charge(CHARGE_ID)

    assert raised.value.code == "http_502"


def test_a_success_that_is_not_the_resource_is_unexpected() -> None:
    client, _ = client_for(answer(200, {"id": CHARGE_ID}))
    with pytest.raises(UnexpectedResponse):
        client.get_charge(CHARGE_ID)


def test_money_is_decimal_both_ways() -> None:
    # Given an answer with exact money
    raw = (
        '{"id": "ch_1", "invoiceId": "1", "status": "DECLINED", "amount": 1500.10,'
        ' "capturedAmount": null, "currency": "KZT", "accountId": "a", "cardId": "****0001",'
        ' "createdAt": "2026-11-28T12:00:00.123Z", "updatedAt": "2026-11-28T12:00:00Z",'
        ' "epay": {}, "nextAction": null,'
        ' "error": {"code": "484", "message": "no funds", "category": "soft"}}'
    )
    client, transport = client_for(answer(201, raw))

    # When a charge is created with a Decimal
    charge = client.create_charge(
        amount=Decimal("1500.10"),
        currency="KZT",
        card_id="c",
        account_id="a",
        description="d",
    )

    # Then the request carried the exact number and the answer is read as Decimal
    assert b'"amount":1500.10' in (transport.sent[0].body or b"")
    assert charge.amount == Decimal("1500.10")
    assert isinstance(charge.amount, Decimal)
    assert charge.captured_amount is None
    assert charge.error is not None
    assert (charge.error.code, charge.error.category) == ("484", "soft")
    assert charge.created_at == datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=UTC)
    assert charge.replayed is False


def test_floats_are_refused_as_money() -> None:
    client, transport = client_for()
    bad: Any = 15.5
    with pytest.raises(TypeError):
        client.capture_charge(CHARGE_ID, amount=bad)
    assert transport.sent == []


def test_ids_and_queries_are_encoded() -> None:
    client, transport = client_for(answer(200, {"data": [], "nextCursor": None}))

    client.list_cards("customer 42/x", refresh=True, limit=5)

    assert transport.sent[0].url == (
        "http://127.0.0.1:3000/accounts/customer%2042%2Fx/cards?refresh=true&limit=5"
    )


def test_search_charges_sends_its_filters() -> None:
    client, transport = client_for(answer(200, {"data": [charge_json()], "nextCursor": "abc=="}))

    page = client.search_charges(
        account_id="customer-42",
        status="CAPTURED",
        created_from=datetime(2026, 11, 1, tzinfo=UTC),
        created_to="2026-12-01T00:00:00Z",
        limit=10,
    )

    assert transport.sent[0].method == "GET"
    assert transport.sent[0].url == (
        "http://127.0.0.1:3000/charges?accountId=customer-42&status=CAPTURED"
        "&createdFrom=2026-11-01T00%3A00%3A00.000Z&createdTo=2026-12-01T00%3A00%3A00Z&limit=10"
    )
    assert [c.id for c in page.data] == [CHARGE_ID]
    assert page.next_cursor == "abc=="


def test_iterating_follows_the_cursors() -> None:
    card = {
        "id": "c1",
        "accountId": "customer-42",
        "status": "ACTIVE",
        "createdAt": "2026-11-28T12:00:00Z",
        "updatedAt": "2026-11-28T12:00:00Z",
    }
    client, transport = client_for(
        answer(200, {"data": [card, {**card, "id": "c2"}], "nextCursor": "p2"}),
        answer(200, {"data": [{**card, "id": "c3"}], "nextCursor": None}),
    )

    ids = [c.id for c in client.iter_cards("customer-42", refresh=True, limit=2)]

    assert ids == ["c1", "c2", "c3"]
    assert transport.sent[0].url.endswith("/cards?refresh=true&limit=2")
    assert transport.sent[1].url.endswith("/cards?limit=2&cursor=p2")


def test_subscription_pages_and_actions() -> None:
    sub = {
        "id": "sub_1",
        "status": "PAUSED",
        "accountId": "customer-42",
        "cardId": "****0001",
        "amount": 4990.00,
        "nextAmount": None,
        "currency": "KZT",
        "description": "Monthly plan",
        "interval": {"unit": "month", "count": 1},
        "startAt": "2027-01-31T09:00:00.000Z",
        "createdAt": "2027-01-20T10:00:00.000Z",
        "updatedAt": "2027-01-20T10:00:00.000Z",
    }
    client, transport = client_for(
        answer(200, {"items": [sub], "nextCursor": None}),
        answer(200, sub),
        answer(200, sub),
    )

    page = client.list_subscriptions("customer-42", limit=1)
    paused = client.pause_subscription("sub_1")
    client.update_subscription("sub_1", amount="5990.00")

    assert page.data[0].interval == Interval("month", 1)
    assert paused.amount == Decimal("4990.0")
    assert [(s.method, s.url.split("3000")[1]) for s in transport.sent] == [
        ("GET", "/subscriptions?accountId=customer-42&limit=1"),
        ("POST", "/subscriptions/sub_1/pause"),
        ("PATCH", "/subscriptions/sub_1"),
    ]
    assert transport.sent[1].body is None
    assert transport.sent[2].json() == {"amount": 5990.0}
    assert b'"amount":5990.00' in (transport.sent[2].body or b"")
