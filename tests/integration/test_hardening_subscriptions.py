"""Hardening of the subscription routes through the real handler (API Gateway events, DynamoDB
Local, moto's SQS and EventBridge): every bad input is a 4xx naming what is wrong and changes
nothing, whatever route, body, query or path id it came by."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Answer, Context, at_path, load_event
from tests.integration.test_subscriptions import START, Subs, subs

__all__ = ["subs"]  # the fixture, imported from the subscription tests rather than copied

BODY: dict[str, Any] = {
    "accountId": "customer-42",
    "cardId": "c0000000-0000-4000-8000-000000000001",
    "amount": 4990,
    "currency": "KZT",
    "description": "Monthly plan",
    "interval": {"unit": "month", "count": 1},
    "startAt": START.isoformat().replace("+00:00", "Z"),
}
LONG_ID = "sub_" + "f" * 4000  # past DynamoDB's 2048-byte partition key
NEWLINE_ID = "sub_" + "0" * 32 + "\n"


def raw_body(base: dict[str, Any], **fields: str) -> str:
    """`base` with some fields given as raw JSON text (numbers json.dumps cannot write)."""
    parts = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in base.items() if k not in fields]
    parts += [f"{json.dumps(k)}: {v}" for k, v in fields.items()]
    return "{" + ", ".join(parts) + "}"


def call(
    subs: Subs,
    name: str,
    sub_id: str | None = None,
    *,
    raw: str | None = None,
    content_type: str | None = "application/json",
    query: dict[str, str] | None = None,
) -> Answer:
    """One API Gateway event from events/subscriptions/<name>.json through the handler."""
    event = load_event(f"subscriptions/{name}.json")
    if sub_id is not None:
        resource = event["routeKey"].split(" ", 1)[1]
        at_path(event, resource.replace("{subscriptionId}", sub_id), subscriptionId=sub_id)
    headers = {k: v for k, v in event["headers"].items() if k != "content-type"}
    if content_type is not None:
        headers["content-type"] = content_type
    event["headers"] = headers
    if raw is not None:
        event["body"] = raw
    if query is not None:
        event["queryStringParameters"] = query
    result = subs.api.lambda_handler(event, Context())
    raw_answer = result.get("body") or ""
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    return Answer(result["statusCode"], headers, json.loads(raw_answer), raw_answer)


def assert_refused(answer: Answer, status: int, code: str, field: str | None) -> None:
    assert answer.status == status, answer.raw
    assert set(answer.body) == {"error"}
    assert answer.body["error"]["code"] == code
    assert answer.body["error"]["message"]
    if field is not None:
        assert field in answer.body["error"]["fields"], answer.body
    assert "DynamoDB" not in answer.raw


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("cardId", '"c0000000-0000-4000-8000-000000000001\\n"'),
        ("email", '"ivan@example.kz\\n"'),
        ("phone", '"77001234567\\n"'),
        ("amount", "1e26"),
        ("amount", "1" + "0" * 40),
        ("currency", '["KZT"]'),
        ("interval", '{"unit": ["month"]}'),
        ("interval", '{"unit": {"m": 1}, "count": 1}'),
        ("description", '"Plan \\ud800"'),
        ("startAt", '"0001-01-01T00:00:00+05:00"'),
        ("startAt", '"9999-12-31T23:59:59-05:00"'),
        ("backLink", '"https://shop.example.kz/\\ud83d\\ude00"'),
        ("failureBackLink", '"https://shop.example.kz/\\u2028"'),
    ],
)
def test_a_bad_field_on_create_is_a_400_naming_it_and_changes_nothing(
    subs: Subs, field: str, raw: str
) -> None:
    before = subs.stack.items()
    answer = call(subs, "create-subscription", raw=raw_body(BODY, **{field: raw}))
    assert_refused(answer, 400, "validation_error", field)
    assert subs.stack.items() == before
    assert subs.stack.simulator.journal == []


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("amount", "1e26"),
        ("amount", "1E+400"),
        ("cardId", '"c0000000-0000-4000-8000-000000000002\\n"'),
        ("description", '"\\udfff"'),
    ],
)
def test_a_bad_field_on_patch_is_a_400_naming_it_and_changes_nothing(
    subs: Subs, field: str, raw: str
) -> None:
    sub_id = subs.create(key="patch-me")["id"]
    before = subs.stack.items()
    answer = call(subs, "update-subscription", sub_id, raw=raw_body({}, **{field: raw}))
    assert_refused(answer, 400, "validation_error", field)
    assert subs.stack.items() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_create_and_patch_take_only_json(subs: Subs, content_type: str | None) -> None:
    sub_id = subs.create(key="typed")["id"]
    before = subs.stack.items()
    created = call(subs, "create-subscription", raw=json.dumps(BODY), content_type=content_type)
    assert_refused(created, 415, "unsupported_media_type", "Content-Type")
    patched = call(
        subs,
        "update-subscription",
        sub_id,
        raw=json.dumps({"amount": 10}),
        content_type=content_type,
    )
    assert_refused(patched, 415, "unsupported_media_type", "Content-Type")
    assert subs.stack.items() == before


@pytest.mark.parametrize("limit", ["²", "٣", "1\n", "\uff11\uff10"])
def test_a_limit_of_unicode_digits_is_named(subs: Subs, limit: str) -> None:
    answer = call(subs, "list-subscriptions", query={"accountId": "customer-42", "limit": limit})
    assert_refused(answer, 400, "validation_error", "limit")


def test_a_lone_surrogate_in_the_account_query_is_named(subs: Subs) -> None:
    answer = call(subs, "list-subscriptions", query={"accountId": "customer-\ud800"})
    assert_refused(answer, 400, "validation_error", "accountId")


@pytest.mark.parametrize("sub_id", [LONG_ID, NEWLINE_ID, "", "sub_missing"])
@pytest.mark.parametrize(
    "name",
    [
        "get-subscription",
        "update-subscription",
        "pause-subscription",
        "resume-subscription",
        "cancel-subscription",
    ],
)
def test_a_path_id_of_another_shape_is_a_404_before_any_read(
    subs: Subs, sub_id: str, name: str
) -> None:
    before = subs.stack.items()
    raw = json.dumps({"amount": 10}) if name == "update-subscription" else None
    answer = call(subs, name, sub_id, raw=raw)
    assert answer.status == 404, answer.raw
    assert answer.body == {"error": {"code": "not_found", "message": "no such subscription"}}
    assert subs.stack.items() == before
