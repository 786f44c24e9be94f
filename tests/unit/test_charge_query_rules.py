"""GET /charges: the query's rules, its cursor, the page's filtering and the index keys."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payments.aws.charge_items import charge_to_item
from payments.aws.charge_store import DynamoChargeStore, _start_key
from payments.aws.dynamo import from_attributes
from payments.charges.events import renewal_key
from payments.charges.model import CaptureMode, Charge, ChargeStatus, HistoryEntry, Source
from payments.charges.search import (
    ChargeQuery,
    ChargeSearch,
    ListBy,
    Listing,
    encode_cursor,
    parse_charge_query,
)
from payments.errors import ValidationError

SUB = "sub_" + "a" * 32
AT = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def _fields(query: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        parse_charge_query(query)
    return dict(caught.value.fields or {})


def _charge(n: int, status: ChargeStatus = ChargeStatus.CAPTURED, **changes: Any) -> Charge:
    charge = Charge(
        id=f"ch_{n:032x}",
        invoice_id=f"{n:012d}",
        status=status,
        amount=Decimal("10.00"),
        currency="KZT",
        account_id="customer-42",
        card_id="c0000000-0000-4000-8000-000000000001",
        description="Order",
        capture=CaptureMode.AUTO,
        recurrent=False,
        language="rus",
        idempotency_key=f"key-{n}",
        request_hash="h",
        secret_hash_digest="d",
        created_at=AT,
        updated_at=AT,
    )
    return replace(charge, **changes)


# ------------------------------------------------------------------------------ parsing


def test_each_filter_chooses_its_partition_and_the_defaults_hold() -> None:
    # Given queries by account, by status, by account and status, by subscription
    by_account = parse_charge_query({"accountId": "customer-42"})
    by_status = parse_charge_query({"status": "NEEDS_REVIEW"})
    both = parse_charge_query({"accountId": "customer-42", "status": "DECLINED", "limit": "100"})
    by_sub = parse_charge_query({"subscriptionId": SUB, "limit": "1"})

    # Then each reads one partition: the account's (status filtered), the status', the sub's
    assert by_account.listing == Listing(ListBy.ACCOUNT, "customer-42")
    assert by_account.limit == 20
    assert by_account.after is None
    assert by_status.listing == Listing(ListBy.STATUS, "NEEDS_REVIEW")
    assert by_status.legacy_listing is None
    assert both.listing.by is ListBy.ACCOUNT
    assert both.status is ChargeStatus.DECLINED
    assert both.limit == 100
    assert by_sub.listing == Listing(ListBy.SUBSCRIPTION, SUB)
    assert by_sub.limit == 1


def test_the_created_window_is_read_as_utc_instants() -> None:
    # When a window is given with and without milliseconds
    query = parse_charge_query(
        {
            "accountId": "a",
            "createdFrom": "2026-12-06T10:00:00Z",
            "createdTo": "2026-12-07T05:00:00.5+05:00",
        }
    )
    # Then both ends are UTC instants
    assert query.created_from == AT
    assert query.created_to == datetime(2026, 12, 7, 0, 0, 0, 500_000, tzinfo=UTC)
    # And an empty window is no error
    empty = {"accountId": "a", "createdFrom": "2026-12-06T10:00:00Z"}
    assert parse_charge_query({**empty, "createdTo": "2026-12-06T15:00:00+05:00"})


@pytest.mark.parametrize(
    ("query", "bad"),
    [
        ({}, {"accountId", "status", "subscriptionId"}),
        ({"limit": "5"}, {"accountId", "status", "subscriptionId"}),
        ({"subscriptionId": SUB, "accountId": "a"}, {"subscriptionId"}),
        ({"subscriptionId": SUB, "status": "CAPTURED"}, {"subscriptionId"}),
        ({"accountId": ""}, {"accountId"}),
        ({"accountId": "a" * 101}, {"accountId"}),
        ({"accountId": "a\n"}, {"accountId"}),
        ({"status": "captured"}, {"status"}),
        ({"status": "PAID"}, {"status"}),
        ({"subscriptionId": "sub_" + "A" * 32}, {"subscriptionId"}),
        ({"subscriptionId": SUB + "\n"}, {"subscriptionId"}),
        ({"accountId": "a", "limit": "0"}, {"limit"}),
        ({"accountId": "a", "limit": "101"}, {"limit"}),
        ({"accountId": "a", "limit": "1.5"}, {"limit"}),
        ({"accountId": "a", "limit": "-1"}, {"limit"}),
        ({"accountId": "a", "limit": "²"}, {"limit"}),
        ({"accountId": "a", "createdFrom": "2026-12-06T10:00:00"}, {"createdFrom"}),
        ({"accountId": "a", "createdFrom": "2026-12-06T10:00:00.0001Z"}, {"createdFrom"}),
        ({"accountId": "a", "createdFrom": "0001-01-01T00:00:00+05:00"}, {"createdFrom"}),
        ({"accountId": "a", "createdTo": "9999-12-31T23:59:59-05:00"}, {"createdTo"}),
        ({"accountId": "a", "createdFrom": "2026-02-30T10:00:00Z"}, {"createdFrom"}),
        ({"accountId": "a", "createdTo": "2026-12-06"}, {"createdTo"}),
        (
            {
                "accountId": "a",
                "createdFrom": "2026-12-06T10:00:00Z",
                "createdTo": "2026-12-06T09:59:59.999Z",
            },
            {"createdTo"},
        ),
        ({"accountId": "a", "page": "2"}, {"page"}),
        ({"accountId": "a", "cursor": ""}, {"cursor"}),
        ({"accountId": "a", "cursor": "not-a-cursor"}, {"cursor"}),
        ({"status": "X", "limit": "0", "sort": "asc"}, {"status", "limit", "sort"}),
    ],
)
def test_bad_queries_name_each_bad_parameter(query: dict[str, Any], bad: set[str]) -> None:
    # When the query is parsed, Then a 400 names exactly the bad parameters
    assert set(_fields(query)) == bad


def test_a_cursor_is_bound_to_its_query_but_not_to_its_limit() -> None:
    # Given a cursor made for one query
    first = parse_charge_query({"accountId": "customer-42", "limit": "2"})
    cursor = encode_cursor(first.digest(), "position")

    # Then the same query (another limit too) reads on from it
    assert parse_charge_query({"accountId": "customer-42", "cursor": cursor}).after == "position"
    # And another account, a status filter or a window refuse it
    for other in (
        {"accountId": "customer-43"},
        {"accountId": "customer-42", "status": "CAPTURED"},
        {"accountId": "customer-42", "createdFrom": "2026-12-06T10:00:00Z"},
        {"status": "CAPTURED"},
    ):
        assert set(_fields({**other, "cursor": cursor})) == {"cursor"}


def test_a_forged_position_is_refused_before_any_read() -> None:
    # When a cursor of the right query carries a position that is not one of the index's
    # Then the store refuses it as a bad cursor (a ValidationError, no call made)
    for position in ("x", "2026-12-06T10:00:00.000Z#ch_1|CHARGE#ch_1", "|"):
        with pytest.raises(ValidationError) as caught:
            _start_key(ListBy.STATUS, "STATUS#CAPTURED", position)
        assert set(caught.value.fields or {}) == {"cursor"}
    # And a subscription's position must name an invoice item, an account's a charge
    sort = f"2026-12-06T10:00:00.000Z#ch_{1:032x}"
    assert _start_key(ListBy.SUBSCRIPTION, f"SUB#{SUB}", f"{sort}|INVOICE#000000000001")
    with pytest.raises(ValidationError):
        _start_key(ListBy.SUBSCRIPTION, f"SUB#{SUB}", f"{sort}|CHARGE#ch_{1:032x}")


# ------------------------------------------------------------------------------ the page


@dataclass
class FakeStore:
    """The search port: answers a fixed page and records what it was asked."""

    charges: list[Charge]
    last: str | None = None
    calls: list[tuple[Listing, int, str | None]] = field(default_factory=list)

    def search(
        self, listing: Listing, limit: int, after: str | None
    ) -> tuple[list[Charge], str | None]:
        self.calls.append((listing, limit, after))
        return self.charges, self.last


def test_a_status_is_kept_by_filtering_and_the_cursor_is_of_the_same_query() -> None:
    # Given an account page with a declined and a captured charge, and more to read
    store = FakeStore([_charge(1, ChargeStatus.DECLINED), _charge(2)], last="pos")
    query = parse_charge_query({"accountId": "customer-42", "status": "DECLINED"})

    # When the page is read
    page = ChargeSearch(store).page(query)  # type: ignore[arg-type]

    # Then one store call was made, only the declined charge is shown
    assert store.calls == [(Listing(ListBy.ACCOUNT, "customer-42"), 20, None)]
    assert [c.id for c in page.charges] == [_charge(1).id]
    # And the next cursor reads on in the same query
    assert page.next_cursor is not None
    follow = {"accountId": "customer-42", "status": "DECLINED", "cursor": page.next_cursor}
    assert parse_charge_query(follow).after == "pos"


def test_an_open_status_reads_open_then_its_own_older_partition() -> None:
    # Given OPEN holds an authorized and a processing charge, and nothing more
    store = FakeStore([_charge(1, ChargeStatus.AUTHORIZED), _charge(2, ChargeStatus.PROCESSING)])
    query = parse_charge_query({"status": "AUTHORIZED"})

    # When the first page is read
    first = ChargeSearch(store).page(query)  # type: ignore[arg-type]

    # Then OPEN was read and only the authorized charge is shown
    assert store.calls == [(Listing(ListBy.STATUS, "OPEN"), 20, None)]
    assert [c.id for c in first.charges] == [_charge(1).id]
    # And the cursor goes on in the partition AUTHORIZED had before OPEN, from its start
    assert first.next_cursor is not None
    follow = parse_charge_query({"status": "AUTHORIZED", "cursor": first.next_cursor})
    older = FakeStore([_charge(3, ChargeStatus.AUTHORIZED)], last="pos")
    second = ChargeSearch(older).page(follow)  # type: ignore[arg-type]
    assert older.calls == [(Listing(ListBy.STATUS, "AUTHORIZED"), 20, None)]
    assert [c.id for c in second.charges] == [_charge(3).id]
    # And its own positions stay in that partition, to its end
    assert second.next_cursor is not None
    then = parse_charge_query({"status": "AUTHORIZED", "cursor": second.next_cursor})
    last = FakeStore([])
    assert ChargeSearch(last).page(then).next_cursor is None  # type: ignore[arg-type]
    assert last.calls == [(Listing(ListBy.STATUS, "AUTHORIZED"), 20, "pos")]


def test_the_last_page_has_no_cursor() -> None:
    page = ChargeSearch(FakeStore([_charge(1)])).page(ChargeQuery(account_id="a"))  # type: ignore[arg-type]
    assert page.next_cursor is None


# ------------------------------------------------------------------------------ index keys


def test_a_charge_is_listed_under_its_status_its_account_and_its_subscription() -> None:
    # Given a renewal charge and its first history entry
    charge = _charge(7, ChargeStatus.PROCESSING, idempotency_key=renewal_key(SUB, 3, 1))
    entry = HistoryEntry(None, ChargeStatus.PROCESSING, AT, Source.API)
    sort = f"2026-12-06T10:00:00.000Z#{charge.id}"

    # Then the open charge item is in the OPEN partition, and stays there while it is open
    assert charge_to_item(charge)["chargeList"] == "STATUS#OPEN"
    assert charge_to_item(charge)["chargeSort"] == sort
    for status in (ChargeStatus.REQUIRES_3DS, ChargeStatus.UNKNOWN, ChargeStatus.AUTHORIZED):
        assert charge_to_item(replace(charge, status=status))["chargeList"] == "STATUS#OPEN"
    # And it moves to its status' own partition when it settles
    moved = replace(charge, status=ChargeStatus.DECLINED, updated_at=datetime.now(UTC))
    assert charge_to_item(moved)["chargeList"] == "STATUS#DECLINED"
    assert charge_to_item(moved)["chargeSort"] == sort
    # And its create writes its first entry into its own history, lists it under its account
    # on the invoice item, and under its subscription on its key's item (kept: no TTL)
    items = _created(charge, entry)
    assert items["CHARGE"]["history"] == [
        {"to": "PROCESSING", "at": "2026-12-06T10:00:00.000Z", "source": "api"}
    ]
    assert (items["INVOICE"]["chargeList"], items["INVOICE"]["chargeSort"]) == (
        "ACCOUNT#customer-42",
        sort,
    )
    assert items["IDEMPOTENCY"]["chargeList"] == f"SUB#{SUB}"
    assert "expiresAt" not in items["IDEMPOTENCY"]
    assert set(items) == {"CHARGE", "IDEMPOTENCY", "INVOICE", "INVOICE_SUFFIX"}
    # And a charge that is no renewal has no key item at all (its id derives from the key)
    plain = _created(_charge(8), entry)
    assert set(plain) == {"CHARGE", "INVOICE", "INVOICE_SUFFIX"}


class _RecordingClient:
    """Takes puts and keeps their items (a DynamoDB client for one create)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        self.items.append(from_attributes(kwargs["Item"]))
        return {}


def _created(charge: Charge, entry: HistoryEntry) -> dict[str, dict[str, Any]]:
    """The items a charge's create writes, by the kind of their sort key."""
    client = _RecordingClient()
    DynamoChargeStore("t", client, clock=lambda: AT).create(charge, entry)
    return {str(i["sk"]).split("#")[0]: i for i in client.items}
