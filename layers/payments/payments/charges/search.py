"""Charge search (`GET /charges`): the query, its cursor, and one page of charges from an index.

A query lists one partition of the charge index (payments.aws.charge_store, ChargeListIndex):

* `subscriptionId`: the subscription's renewal charges (every attempt, declined ones included);
* `accountId` (with or without `status`): the account's charges, a `status` kept by filtering;
* `status` alone: the charges now in that status (the operator's view of NEEDS_REVIEW). A
  charge still open (PROCESSING, REQUIRES_3DS, UNKNOWN, AUTHORIZED: see OPEN_STATUSES) is listed
  under one partition, OPEN, until it leaves those statuses: the index entry of an auto-captured
  charge moves once (to CAPTURED), not at every step. A status query over OPEN keeps its status by
  filtering, then reads the partition its status had before (`STATUS#<status>`: charges written
  before OPEN existed, until their next write).

Newest first (createdAt, then id, descending), optionally within `[createdFrom, createdTo)`.
One index Query and one BatchGetItem per page; the charges are read strongly consistent and a
charge whose current status is not the one asked for is left out (a `status` over an account, or
an index that lags a status change), so a page may hold fewer than `limit` charges: only a
`nextCursor` of null means the end. The cursor is bound to the query it came from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from payments.charges.model import Charge, ChargeStatus
from payments.errors import ValidationError
from payments.shared.clock import iso
from payments.shared.fields import account_id_error, matches

if TYPE_CHECKING:
    from payments.charges.ports import ChargeStore

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 1024
PARAMETERS = frozenset(
    {"accountId", "status", "subscriptionId", "createdFrom", "createdTo", "limit", "cursor"}
)
FILTERS = ("accountId", "status", "subscriptionId")
# The subscriptions' id shape (payments.subscriptions.model; charges do not import that domain).
SUBSCRIPTION_ID_RE = re.compile(r"\Asub_[0-9a-f]{32}\Z")
# An instant: seconds, at most milliseconds (the precision charges are stored with), and Z or an
# offset (read as the UTC instant it names).
INSTANT_RE = re.compile(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})\Z"
)
LIMIT_RE = re.compile(r"\A[0-9]{1,3}\Z")


# Statuses a charge passes through on its way to a settled one: listed under one index
# partition, so the steps between them move no index entry (issue 16: 2 WRU a charge).
OPEN_STATUSES = frozenset(
    {
        ChargeStatus.PROCESSING,
        ChargeStatus.REQUIRES_3DS,
        ChargeStatus.UNKNOWN,
        ChargeStatus.AUTHORIZED,
    }
)
OPEN = "OPEN"
# A position in the partition a status had before OPEN (the rest of a status query over OPEN).
LEGACY = "legacy:"


def status_partition(status: ChargeStatus) -> str:
    """The value of the STATUS partition a charge in `status` is listed under."""
    return OPEN if status in OPEN_STATUSES else status.value


class ListBy(StrEnum):
    """The partition of the charge index a query reads (the value is the key's prefix)."""

    ACCOUNT = "ACCOUNT"
    STATUS = "STATUS"
    SUBSCRIPTION = "SUB"


@dataclass(frozen=True)
class Listing:
    """One partition of the charge index, optionally cut to a created window."""

    by: ListBy
    value: str
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive


@dataclass(frozen=True)
class ChargeQuery:
    """A validated `GET /charges` query."""

    account_id: str | None = None
    status: ChargeStatus | None = None
    subscription_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    limit: int = DEFAULT_LIMIT
    after: str | None = None  # the store's position inside the cursor

    @property
    def listing(self) -> Listing:
        """The index partition that answers the query."""
        if self.subscription_id is not None:
            by, value = ListBy.SUBSCRIPTION, self.subscription_id
        elif self.account_id is not None:
            by, value = ListBy.ACCOUNT, self.account_id
        else:
            assert self.status is not None
            by, value = ListBy.STATUS, status_partition(self.status)
        return Listing(by, value, self.created_from, self.created_to)

    @property
    def legacy_listing(self) -> Listing | None:
        """For a status alone that is listed under OPEN: its own partition, where charges
        written before OPEN existed stay until their next write (read after OPEN)."""
        listing = self.listing
        if listing.by is not ListBy.STATUS or listing.value != OPEN:
            return None
        assert self.status is not None
        return replace(listing, value=self.status.value)

    def digest(self) -> str:
        """What binds a cursor to this query: its filters and window (not its limit)."""
        return query_digest(self.account_id, self.status, self.subscription_id, *self._window())

    def _window(self) -> tuple[str | None, str | None]:
        return (
            iso(self.created_from) if self.created_from else None,
            iso(self.created_to) if self.created_to else None,
        )


@dataclass(frozen=True)
class ChargePage:
    """One page of a search: the charges, newest first, and the next page's cursor (or None)."""

    charges: list[Charge]
    next_cursor: str | None


def query_digest(
    account_id: str | None,
    status: ChargeStatus | None,
    subscription_id: str | None,
    created_from: str | None,
    created_to: str | None,
) -> str:
    """A short digest of a query's filters (a cursor carries it and must match it)."""
    canonical = json.dumps(
        [account_id, status.value if status else None, subscription_id, created_from, created_to],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


# --- parsing ----------------------------------------------------------------------------------


def _instant(value: str) -> datetime | None:
    if not matches(INSTANT_RE, value):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):  # 2026-02-30, 25:00, past year 1 or 9999 in UTC
        return None


def _status(value: str) -> ChargeStatus | None:
    return ChargeStatus(value) if value in ChargeStatus.__members__ else None


def _limit(value: str) -> int | None:
    return int(value) if matches(LIMIT_RE, value) and 1 <= int(value) <= MAX_LIMIT else None


def _account(value: str) -> str | None:
    return None if account_id_error(value) else value


def _subscription(value: str) -> str | None:
    return value if matches(SUBSCRIPTION_ID_RE, value) else None


# Each value parameter: (what it reads a value as, None when invalid; the message then).
_RULES: dict[str, tuple[Callable[[str], Any], str]] = {
    "accountId": (
        _account,
        "must be a non-empty string of at most 100 characters, without control characters",
    ),
    "status": (_status, "must be one of " + ", ".join(s.value for s in ChargeStatus)),
    "subscriptionId": (_subscription, "must be a subscription id (sub_ and 32 hex digits)"),
    "createdFrom": (_instant, "must be an ISO 8601 instant, e.g. 2026-12-06T10:00:00Z"),
    "createdTo": (_instant, "must be an ISO 8601 instant, e.g. 2026-12-06T10:00:00Z"),
    "limit": (_limit, f"must be an integer from 1 to {MAX_LIMIT}"),
}
_CURSOR_ERROR = {"cursor": "must be the nextCursor of a previous page of the same query"}


def _combination_errors(named: list[str]) -> dict[str, str]:
    """At least one filter; a subscription's charges are not filtered further."""
    if not named:
        return dict.fromkeys(FILTERS, "one of accountId, status or subscriptionId is required")
    if "subscriptionId" in named and len(named) > 1:
        return {"subscriptionId": "may not be combined with accountId or status"}
    return {}


def parse_charge_query(query: Mapping[str, Any]) -> ChargeQuery:
    """Validate a `GET /charges` query string; a ValidationError names every bad parameter
    (unknown ones included) before anything is read."""
    errors = {str(name)[:64]: "unknown parameter" for name in sorted(set(query) - PARAMETERS)}
    values: dict[str, Any] = {}
    for name, (read, message) in _RULES.items():
        if name not in query:
            continue
        raw = query[name]
        values[name] = read(raw) if isinstance(raw, str) else None
        if values[name] is None:
            errors[name] = message
    created_from, created_to = values.get("createdFrom"), values.get("createdTo")
    if created_from and created_to and created_to < created_from:
        errors.setdefault("createdTo", "must not be before createdFrom")
    for name, message in _combination_errors([n for n in FILTERS if n in query]).items():
        errors.setdefault(name, message)
    if errors:
        raise ValidationError("the query is invalid", errors)
    parsed = ChargeQuery(
        account_id=values.get("accountId"),
        status=values.get("status"),
        subscription_id=values.get("subscriptionId"),
        created_from=created_from,
        created_to=created_to,
        limit=values.get("limit", DEFAULT_LIMIT),
    )
    if "cursor" not in query:
        return parsed
    cursor = query["cursor"]
    after = decode_cursor(cursor, parsed.digest()) if isinstance(cursor, str) else None
    if after is None:
        raise ValidationError("the query is invalid", dict(_CURSOR_ERROR))
    return replace(parsed, after=after)


# --- cursors ----------------------------------------------------------------------------------


def encode_cursor(digest: str, position: str) -> str:
    """An opaque cursor: the query's digest and the store's position after the page."""
    raw = json.dumps({"q": digest, "after": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, digest: str) -> str | None:
    """The store's position inside a cursor of the query with `digest`, or None (not a cursor
    of ours, or one of another query)."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError included
        return None
    if not isinstance(data, dict) or set(data) != {"q", "after"}:
        return None
    position = data["after"]
    if data["q"] != digest or not isinstance(position, str) or not position:
        return None
    return position


# --- the use case -----------------------------------------------------------------------------


class ChargeSearch:
    """Pages through the charge index: one Query and one BatchGetItem per page."""

    def __init__(self, store: ChargeStore) -> None:
        self._store = store

    def page(self, query: ChargeQuery) -> ChargePage:
        """One page of the query's charges, newest first, and the cursor of the next one.
        A status listed under OPEN pages through OPEN, then through its own older partition
        (LEGACY positions): a page at the switch may be empty, with a cursor."""
        legacy = query.legacy_listing
        if legacy is not None and query.after is not None and query.after.startswith(LEGACY):
            after = query.after.removeprefix(LEGACY) or None
            charges, last = self._store.search(legacy, query.limit, after)
            last = LEGACY + last if last else None
        else:
            charges, last = self._store.search(query.listing, query.limit, query.after)
            if legacy is not None and last is None:
                last = LEGACY
        if query.status is not None:
            charges = [c for c in charges if c.status is query.status]
        return ChargePage(charges, encode_cursor(query.digest(), last) if last else None)
