"""GET /charges through the charges function: DynamoDB Local (ChargeListIndex from template.yaml),
the simulator, and the renewal worker for a subscription's charges."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.epay_sim.cards import CARD_AUTH, CARD_INSUFFICIENT_FUNDS
from payments import bootstrap
from payments.aws.charge_store import DynamoChargeStore
from payments.charges.model import ChargeStatus, HistoryEntry, Source
from tests.integration.conftest import (
    Answer,
    Stack,
    create_event,
    get_event,
    item_charge_id,
    merchant_event,
)
from tests.integration.test_subscriptions import Subs, subs  # noqa: F401 - the fixture

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(stack: Stack) -> Iterator[Clock]:
    clock = Clock()
    bootstrap.use_clock(clock)
    yield clock
    bootstrap.use_clock(datetime.now)


def search_event(query: dict[str, str] | None) -> dict[str, Any]:
    """GET /charges with a query string, as API Gateway hands it over."""
    return merchant_event("GET", "/charges", query=query)


def search(stack: Stack, **query: str) -> Answer:
    return stack.invoke(search_event(query))


def charge(stack: Stack, account: str = "customer-42", card: str = CARD_AUTH) -> dict[str, Any]:
    body = {
        "amount": 1500,
        "currency": "KZT",
        "cardId": card,
        "accountId": account,
        "description": "Order",
    }
    answer = stack.invoke(create_event(body, key=uuid.uuid4().hex))
    assert answer.status in (201, 402), answer.body
    charge_id = answer.headers.get("location", "").removeprefix("/charges/")
    if not charge_id:
        (charge_id,) = [
            item_charge_id(i)
            for i in stack.charge_items()
            if i["accountId"]["S"] == account and i["cardId"]["S"] == card
        ][-1:]
    shown = stack.invoke(get_event(charge_id))
    assert shown.status == 200
    return dict(shown.body)


def ids(answer: Answer) -> list[str]:
    assert answer.status == 200, answer.body
    assert set(answer.body) == {"data", "nextCursor"}
    return [c["id"] for c in answer.body["data"]]


# ------------------------------------------------------------------------------ by account


def test_an_accounts_charges_come_newest_first_page_by_page(stack: Stack, clock: Clock) -> None:
    # Given five charges of one account a minute apart, two in the same millisecond, and one
    # charge of another account
    made = []
    for minute in (0, 1, 2, 3, 3):
        clock.now = T0 + timedelta(minutes=minute)
        made.append(charge(stack))
    charge(stack, account="customer-43")

    # When the account's charges are read two at a time, following nextCursor
    pages, query = [], {"accountId": "customer-42", "limit": "2"}
    answer = search(stack, **query)
    pages.append(ids(answer))
    while answer.body["nextCursor"] is not None:
        answer = search(stack, **query, cursor=answer.body["nextCursor"])
        pages.append(ids(answer))

    # Then every charge of the account comes once, newest first (then by id), in pages of two
    expected = sorted(made, key=lambda c: (c["createdAt"], c["id"]), reverse=True)
    assert [i for page in pages for i in page] == [c["id"] for c in expected]
    assert [len(p) for p in pages] == [2, 2, 1]
    # And each is shown exactly as GET /charges/{chargeId} shows it
    first = search(stack, accountId="customer-42", limit="1").body["data"][0]
    assert first == stack.invoke(get_event(first["id"])).body
    # And another account sees none of them
    assert len(ids(search(stack, accountId="customer-43"))) == 1
    assert ids(search(stack, accountId="nobody")) == []


def test_the_created_window_includes_from_and_excludes_to(stack: Stack, clock: Clock) -> None:
    # Given charges at 10:00, 11:00 and 12:00
    made = []
    for hour in range(3):
        clock.now = T0 + timedelta(hours=hour)
        made.append(charge(stack))

    # When the window [11:00, 12:00) is asked for
    window = search(
        stack,
        accountId="customer-42",
        createdFrom="2026-12-06T11:00:00Z",
        createdTo="2026-12-06T12:00:00Z",
    )
    # Then only the 11:00 charge is in it
    assert ids(window) == [made[1]["id"]]
    # And each end alone cuts the list on its side
    since = search(stack, accountId="customer-42", createdFrom="2026-12-06T11:00:00Z")
    assert ids(since) == [made[2]["id"], made[1]["id"]]
    before = search(stack, accountId="customer-42", createdTo="2026-12-06T11:00:00.000Z")
    assert ids(before) == [made[0]["id"]]


# ------------------------------------------------------------------------------ by status


def test_status_over_an_account_and_the_operators_needs_review_view(
    stack: Stack, clock: Clock
) -> None:
    # Given a captured and a declined charge of one account, and a captured one of another
    captured = charge(stack)
    clock.now += timedelta(seconds=1)
    declined = charge(stack, card=CARD_INSUFFICIENT_FUNDS)
    clock.now += timedelta(seconds=1)
    other = charge(stack, account="customer-43")
    assert (captured["status"], declined["status"]) == ("CAPTURED", "DECLINED")

    # When the account's DECLINED charges are asked for
    # Then only the declined one is listed
    assert ids(search(stack, accountId="customer-42", status="DECLINED")) == [declined["id"]]
    assert ids(search(stack, status="CAPTURED")) == [other["id"], captured["id"]]

    # Given a person must look at one of the captured charges (as the reconciler marks it)
    store: DynamoChargeStore = bootstrap.store()
    current = store.get(other["id"])
    assert current is not None
    store.transition(
        current,
        replace(current, status=ChargeStatus.NEEDS_REVIEW, updated_at=clock.now),
        [
            HistoryEntry(
                ChargeStatus.CAPTURED, ChargeStatus.NEEDS_REVIEW, clock.now, Source.RECONCILER
            )
        ],
    )

    # When the operator asks for NEEDS_REVIEW without an account
    review = search(stack, status="NEEDS_REVIEW")
    # Then that charge is listed, in its new status, and it left the CAPTURED list
    assert ids(review) == [other["id"]]
    assert review.body["data"][0]["status"] == "NEEDS_REVIEW"
    assert ids(search(stack, status="CAPTURED")) == [captured["id"]]


def held_charge(stack: Stack, account: str) -> dict[str, Any]:
    """A charge of `account` held for a manual capture (AUTHORIZED)."""
    body = {"amount": 900, "currency": "KZT", "cardId": CARD_AUTH, "accountId": account}
    answer = stack.invoke(
        create_event(body | {"description": "Order", "capture": "manual"}, key=uuid.uuid4().hex)
    )
    assert answer.status == 201, answer.body
    assert answer.body["status"] == "AUTHORIZED"
    return dict(answer.body)


def test_open_charges_share_one_partition_and_older_entries_are_still_read(
    stack: Stack, clock: Clock
) -> None:
    # Given a charge held for a manual capture (AUTHORIZED) and one captured
    held = held_charge(stack, "customer-42")
    clock.now += timedelta(seconds=1)
    captured = charge(stack)
    items = {item_charge_id(i): i for i in stack.charge_items()}

    # Then the held charge is in the OPEN partition, the captured one in its own
    assert items[held["id"]]["chargeList"]["S"] == "STATUS#OPEN"
    assert items[captured["id"]]["chargeList"]["S"] == "STATUS#CAPTURED"

    # Given a held charge written before OPEN existed (listed under its own status)
    clock.now += timedelta(seconds=1)
    older = held_charge(stack, "customer-43")
    stack.dynamodb.update_item(
        TableName=stack.table,
        Key={"pk": {"S": f"CHARGE#{older['id']}"}, "sk": {"S": "CHARGE"}},
        UpdateExpression="SET chargeList = :old",
        ExpressionAttributeValues={":old": {"S": "STATUS#AUTHORIZED"}},
    )

    # When the AUTHORIZED charges are paged through one at a time
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        query = {"status": "AUTHORIZED", "limit": "1"}
        answer = search(stack, **(query | ({"cursor": cursor} if cursor else {})))
        seen += ids(answer)
        cursor = answer.body["nextCursor"]
        if cursor is None:
            break

    # Then both held charges are listed once each, the older one after OPEN's
    assert seen == [held["id"], older["id"]]
    assert cursor is None
    # And an open status with no charge lists none, a settled one only its own
    assert ids(search(stack, status="PROCESSING")) == []
    assert ids(search(stack, status="CAPTURED")) == [captured["id"]]


# ------------------------------------------------------------------------------ by subscription


def test_a_subscriptions_renewal_charges_include_the_declined_one(subs: Subs) -> None:  # noqa: F811
    # Given a monthly subscription whose first renewal is declined (soft), then paid a day
    # later with a new card
    sub = subs.create(cardId=CARD_INSUFFICIENT_FUNDS)
    assert sub["charges"] == f"/charges?subscriptionId={sub['id']}"
    start = subs.clock.now
    assert subs.run() == 1
    past_due = subs.get(sub["id"])
    assert past_due["status"] == "PAST_DUE"
    # Then the past-due subscription names its declined charge
    declined = past_due["lastChargeId"]
    assert declined is not None
    subs.call("update-subscription", sub["id"], {"cardId": CARD_AUTH})
    subs.clock.now = start + timedelta(days=1)
    assert subs.run() == 1
    paid = subs.get(sub["id"])
    assert paid["status"] == "ACTIVE"
    assert paid["lastChargeId"] not in (None, declined)

    # When its charges are asked for by the link it shows
    answer = search(subs.stack, subscriptionId=sub["id"])
    # Then both renewal charges are listed, newest first, the declined one included
    assert ids(answer) == [paid["lastChargeId"], declined]
    assert [c["status"] for c in answer.body["data"]] == ["CAPTURED", "DECLINED"]
    # And another subscription has none
    assert ids(search(subs.stack, subscriptionId="sub_" + "0" * 32)) == []


# ------------------------------------------------------------------------------ bad queries


@pytest.mark.parametrize(
    ("query", "bad"),
    [
        (None, {"accountId", "status", "subscriptionId"}),
        ({"limit": "10"}, {"accountId", "status", "subscriptionId"}),
        ({"accountId": "customer-42", "subscriptionId": "sub_" + "0" * 32}, {"subscriptionId"}),
        ({"status": "SETTLED"}, {"status"}),
        ({"accountId": "customer-42", "limit": "101"}, {"limit"}),
        ({"accountId": "customer-42", "createdFrom": "yesterday"}, {"createdFrom"}),
        ({"accountId": "customer-42", "sort": "asc", "status": "x"}, {"sort", "status"}),
        ({"accountId": "customer-42", "cursor": "garbage"}, {"cursor"}),
    ],
)
def test_bad_queries_are_400_before_anything_is_read(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, query: dict[str, str] | None, bad: set[str]
) -> None:
    # Given the store's search is watched
    calls: list[Any] = []
    monkeypatch.setattr(DynamoChargeStore, "search", lambda *a: calls.append(a))

    # When a bad query is sent
    answer = stack.invoke(search_event(query))

    # Then it is a 400 naming each bad parameter, and nothing was read
    assert answer.status == 400
    assert answer.body["error"]["code"] == "validation_error"
    assert set(answer.body["error"]["fields"]) == bad
    assert calls == []


def test_a_cursor_of_another_query_is_400(stack: Stack, clock: Clock) -> None:
    # Given a cursor of one account's charges
    for _ in range(2):
        clock.now += timedelta(seconds=1)
        charge(stack)
    cursor = search(stack, accountId="customer-42", limit="1").body["nextCursor"]
    assert cursor is not None

    # When it is used with another account, a status or a window
    for query in (
        {"accountId": "customer-43"},
        {"status": "CAPTURED"},
        {"accountId": "customer-42", "status": "CAPTURED"},
        {"accountId": "customer-42", "createdFrom": "2026-01-01T00:00:00Z"},
    ):
        answer = search(stack, **query, cursor=cursor)
        # Then it is refused as the cursor's fault
        assert answer.status == 400, query
        assert set(answer.body["error"]["fields"]) == {"cursor"}
    # And with its own query (another limit) it reads on
    assert len(ids(search(stack, accountId="customer-42", limit="5", cursor=cursor))) == 1
