"""DynamoDB access for charges: one table, conditional writes and transactions only.

Items (pk / sk):
  CHARGE#<id>            / CHARGE             the charge, with `status`, `version` and `history`
                                              (its transitions, oldest first: each write appends
                                              its own, so a status change is one conditional
                                              write of one item, never a transaction). Under
                                              1 KB (1 WRU a write): digests as Binary, no payer
                                              fields, no merchant Idempotency-Key, no `id` or
                                              `createdAt` (the keys hold them) (issue 16; items
                                              written before keep theirs inline, read)
  CHARGE#<id>            / HISTORY#<version>  one transition of a charge written before history
                                              moved into the charge item (read, never written)
  IDEMPOTENCY#<key>      / IDEMPOTENCY        a renewal's key: lists its charge under the
                                              subscription (no TTL). A merchant's key has no item:
                                              the charge id derives from it (charge_id_for_key);
                                              items of keys used before that are still read
  INVOICE#<invoiceId>    / INVOICE            an invoice id is used once, forever: `chargeId`,
                                              and the charge's write-once facts (issue 16): the
                                              payer's fields (name, email, phone, backLink,
                                              failureBackLink) and `idempotencyKey`, read back
                                              only by the 3-D Secure return (`payer`)
  INVOICE_SUFFIX#<terminal>#<last6>           the last six digits are unique per terminal while
                         / INVOICE_SUFFIX     reserved (TTL: the window); the rings that deal
                                              them out: payments.aws.invoice_space
  POSTLINKS#<invoiceId>  / INBOX#<sha256>     a raw postLink notification and its verdict, in
                                              its invoice's partition (TTL; written by
                                              payments.aws.inbox; no index entry). Before
                                              issue 16: INBOX#<sha256> / INBOX, read until TTL
  TERMINAL#<terminal id> / TERMINAL           the terminal's 8-digit code, written once when the
                                              status API first names it (charges.terminals)

ChargeListIndex (KEYS_ONLY; `chargeList` / `chargeSort` = "<createdAt ISO>#<charge id>") answers
`GET /charges` (payments.charges.search), one partition per query:
  STATUS#<status>      on the charge item; STATUS#OPEN while it is open (charges.search
                       OPEN_STATUSES): moves when it settles or reopens (the only key that does)
  ACCOUNT#<accountId>  on the charge's INVOICE item: written once (HISTORY#000001 before)
  SUB#<subscriptionId> on a renewal charge's IDEMPOTENCY item (sparse): written once (its INVOICE
                       item before)
No item is added for it; charges written before the index appear under their status at their next
write, and under their account or subscription not at all (no backfill).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from payments.aws.charge_items import (
    charge_from_item,
    charge_to_item,
    charge_update,
    digest_hex,
    history_entry,
    invoice_facts,
    invoice_listing,
    list_keys,
    list_sort,
    new_charge_item,
)
from payments.aws.dynamo import DynamoCalls, _put_new, due_keys, from_attributes
from payments.aws.invoice_space import suffix_guard
from payments.charges.events import parse_renewal_key
from payments.charges.model import Charge, HistoryEntry
from payments.charges.ports import CardSnapshot
from payments.charges.search import ListBy, Listing
from payments.errors import ValidationError
from payments.shared.clock import iso
from payments.shared.idempotency import IdempotencyRecord
from payments.shared.payer import Payer

LIST_INDEX = "ChargeListIndex"
_BATCH_ROUNDS = 5
# A position in ChargeListIndex: the sort key, then the table key of the item it was read from.
_SORT_RE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z#ch_[0-9a-f]{32}\Z")
_CHARGE_PK = re.compile(r"\ACHARGE#ch_[0-9a-f]{32}\Z")
_INVOICE_PK = re.compile(r"\AINVOICE#[0-9]{6,15}\Z")
_LISTED_ITEMS = {
    ListBy.STATUS: ((_CHARGE_PK, "CHARGE"),),
    ListBy.ACCOUNT: ((_INVOICE_PK, "INVOICE"), (_CHARGE_PK, "HISTORY#000001")),
    ListBy.SUBSCRIPTION: (
        (re.compile(r"\AIDEMPOTENCY#[\x21-\x7e]{1,255}\Z"), "IDEMPOTENCY"),
        (_INVOICE_PK, "INVOICE"),
    ),
}


def _invoice_item(charge: Charge) -> dict[str, Any]:
    """The invoice's guard, listing the charge under its account and keeping its write-once
    facts (payer, Idempotency-Key): written before the charge, so the charge never exists
    without them. A racer with the same key writes its own invoice and loses at the charge put:
    the charge's `invoiceId` names the winner's."""
    return {
        "pk": f"INVOICE#{charge.invoice_id}",
        "sk": "INVOICE",
        "chargeId": charge.id,
        **invoice_listing(charge),
        **invoice_facts(charge),
    }


class DynamoChargeStore:
    """Charges, their history, idempotency keys and invoice ids in one DynamoDB table."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        *,
        clock: Callable[[], datetime] | None = None,
        invoice_suffix_ttl: timedelta = timedelta(days=400),
    ) -> None:
        self._table = table_name
        self.client = client  # shared with the other stores of the table (one client a container)
        self._db = DynamoCalls(client)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._suffix_ttl = invoice_suffix_ttl

    def create(self, charge: Charge, entry: HistoryEntry) -> None:
        """Reserve the charge's invoice suffix and invoice id (and a renewal's key, which lists
        it under its subscription), then write the charge, its history holding `entry`: one
        conditional put each, the charge last (DynamoCalls.put_in_order). Raises
        DuplicateKeyError naming the guard that held: "charge" when the Idempotency-Key's charge
        (its id derives from the key) exists. A reservation left by a stop or a crash names a
        charge that does not hold it: readers check (get_by_invoice, search)."""
        now = self._clock()
        puts = [
            suffix_guard(
                self._table,
                charge.terminal_id,
                charge.invoice_id,
                {"chargeId": charge.id},
                now + self._suffix_ttl,
                now,
            ),
            _put_new(self._table, _invoice_item(charge)),
        ]
        names = ["invoice_suffix", "invoice"]
        key = charge.idempotency_key
        renewal = parse_renewal_key(key)
        if key is not None and renewal is not None:
            # Kept (no TTL) to list the charge under its subscription; one left by an attempt
            # that stopped before its charge names the same charge id, so it is taken over.
            listing = {
                "pk": f"IDEMPOTENCY#{key}",
                "sk": "IDEMPOTENCY",
                "chargeId": charge.id,
                "requestHash": charge.request_hash,
                **list_keys(ListBy.SUBSCRIPTION, renewal[0], charge),
            }
            put = _put_new(self._table, listing)
            put["Put"]["ConditionExpression"] = "attribute_not_exists(pk) OR chargeId = :id"
            put["Put"]["ExpressionAttributeValues"] = {":id": {"S": charge.id}}
            puts.append(put)
            names.append("idempotency")
        puts.append(_put_new(self._table, new_charge_item(charge, entry)))
        names.append("charge")
        self._db.put_in_order(puts, names)

    def get(self, charge_id: str) -> Charge | None:
        """Read a charge (strongly consistent), or None."""
        item = self._db.get(self._table, f"CHARGE#{charge_id}", "CHARGE")
        return charge_from_item(item) if item else None

    def get_by_invoice(self, invoice_id: str) -> Charge | None:
        """The charge an invoice id belongs to (`INVOICE#<id>` holds its chargeId), or None: no
        such invoice, a card setup's that has no charge (payments.aws.card_store), or one
        reserved by a create that stopped before its charge."""
        item = self._db.get(self._table, f"INVOICE#{invoice_id}", "INVOICE")
        if not item or not item.get("chargeId"):
            return None
        charge = self.get(str(item["chargeId"]))
        return charge if charge is not None and charge.invoice_id == invoice_id else None

    def get_idempotency(self, key: str, charge_id: str) -> IdempotencyRecord | None:
        """What `key` created, or None if the key is new: the charge `charge_id` (its id derives
        from the key), else the charge an `IDEMPOTENCY#<key>` item of a key used before ids were
        derived names. Both in one BatchGetItem."""
        found = self._db.batch_get(self._table, _key_items(key, charge_id), names=_KEY_NAMES)
        return _key_record(key, charge_id, {str(item["pk"]): item for item in found})

    def get_idempotency_and_card(
        self, key: str, charge_id: str, card_id: str
    ) -> tuple[IdempotencyRecord | None, CardSnapshot | None]:
        """What `get_idempotency` answers, and the saved card `card_id` (its `CARD#<id>` item;
        None when never seen) read in the same BatchGetItem, strongly consistent like the
        card store's own GetItem: a new charge's card check costs no request of its own."""
        # Only a charge's create reads a card: the other users of this store never load it.
        from payments.aws.card_store import card_key, card_snapshot

        card = card_key(card_id)
        keys = [*_key_items(key, charge_id), card]
        found = {
            str(item["pk"]): item
            for item in self._db.batch_get(self._table, keys, names=_KEY_AND_CARD_NAMES)
        }
        item = found.get(card["pk"]["S"])
        return _key_record(key, charge_id, found), None if item is None else card_snapshot(item)

    def payer(self, charge: Charge) -> Payer:
        """The payer facts of a charge: its own when it carries them (read from an item written
        before issue 16, or not stored yet), else those its INVOICE item keeps (one strongly
        consistent GetItem); none when that item does not name the charge."""
        if charge.payer is not None:
            return charge.payer
        item = self._db.get(self._table, f"INVOICE#{charge.invoice_id}", "INVOICE")
        if not item or item.get("chargeId") != charge.id:
            return Payer()
        return Payer.from_fields(item)

    def transition(self, current: Charge, updated: Charge, entries: list[HistoryEntry]) -> Charge:
        """Replace `current` by `updated` only if its status and version are still those read,
        appending `entries` to its history: one conditional UpdateItem. Returns the stored
        charge."""
        stored, items, names = self.transition_items(current, updated, entries)
        self._db.call("update_item", names, **items[0]["Update"])
        return stored

    def transition_items(
        self, current: Charge, updated: Charge, entries: list[HistoryEntry]
    ) -> tuple[Charge, list[dict[str, Any]], list[str]]:
        """The stored charge and the transaction item of `transition` (named), for a writer
        that adds its own items to the same transaction (payments.aws.refund_store)."""
        new_version = current.version + max(1, len(entries))
        stored = replace(updated, version=new_version)
        update = charge_update(self._table, current, charge_to_item(stored), entries)
        return stored, [{"Update": update}], ["charge"]

    def history(self, charge_id: str) -> list[HistoryEntry]:
        """Every transition of a charge, oldest first: one Query of its partition (the charge's
        own history, after the HISTORY# items of a charge written before it moved there)."""
        answer = self._db.call(
            "query",
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CHARGE#{charge_id}"}},
            ConsistentRead=True,
        )
        items = [from_attributes(raw) for raw in answer.get("Items", [])]
        older = sorted(
            (i for i in items if str(i["sk"]).startswith("HISTORY#")), key=lambda i: str(i["sk"])
        )
        own = next((i.get("history") or [] for i in items if i["sk"] == "CHARGE"), [])
        return [history_entry(value) for value in [*older, *own]]

    def terminal_code(self, terminal_id: str) -> str | None:
        """The 8-digit code kept for a terminal (its UUID), or None while none is known."""
        item = self._db.get(self._table, f"TERMINAL#{terminal_id.strip().lower()}", "TERMINAL")
        return str(item["code"]) if item else None

    def remember_terminal_code(self, terminal_id: str, code: str) -> str:
        """Keep a terminal's code unless one is kept already (one conditional put); the code
        kept, which is the earlier one when two paths learn it at once."""
        key = f"TERMINAL#{terminal_id.strip().lower()}"
        item = {
            "pk": key,
            "sk": "TERMINAL",
            "terminalId": terminal_id,
            "code": code,
            "learnedAt": iso(self._clock()),
        }
        if self._db.call_if("put_item", **_put_new(self._table, item)["Put"]) is not None:
            return code
        return self.terminal_code(terminal_id) or code

    def due_charge_ids(self, shard: int, now: datetime, limit: int) -> list[str]:
        """Ids of charges whose next check is due, oldest first, from one shard of DueIndex.

        The index is eventually consistent: callers re-read each charge before acting on it.
        """
        keys = due_keys(self._db, self._table, f"DUE#{shard}", iso(now), limit)
        return [pk.removeprefix("CHARGE#") for pk, _ in keys]

    def search(
        self, listing: Listing, limit: int, after: str | None
    ) -> tuple[list[Charge], str | None]:
        """Up to `limit` charges of one ChargeListIndex partition, newest first: one Query of the
        index (keys only, eventually consistent), then one BatchGetItem of the charges (strongly
        consistent; unprocessed keys asked again, a few rounds). Returns them in index order
        and the position after the page (None at the end).

        `after` must be a position this method returned for the same kind of listing (the
        cursor carries it): anything else is a ValidationError naming `cursor`, before any read.
        """
        partition = f"{listing.by.value}#{listing.value}"
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": LIST_INDEX,
            "ScanIndexForward": False,
            "Limit": limit,
            **_list_condition(partition, listing),
        }
        if after is not None:
            request["ExclusiveStartKey"] = _start_key(listing.by, partition, after)
        answer = self._db.call("query", **request)
        sorts = [str(item["chargeSort"]["S"]) for item in answer.get("Items", [])]
        found = self._batch_get([sort.split("#", 1)[1] for sort in sorts])
        last = answer.get("LastEvaluatedKey")
        position = f"{last['chargeSort']['S']}|{last['pk']['S']}" if last else None
        # The entry of a reservation left by a create that stopped early names a charge that
        # another entry lists: only the entry matching the charge's own sort key is kept.
        charges = (found.get(sort.split("#", 1)[1]) for sort in sorts)
        kept = [c for c, sort in zip(charges, sorts, strict=True) if c and list_sort(c) == sort]
        return kept, position

    def _batch_get(self, ids: list[str]) -> dict[str, Charge]:
        keys = [{"pk": {"S": f"CHARGE#{i}"}, "sk": {"S": "CHARGE"}} for i in dict.fromkeys(ids)]
        charges = (
            charge_from_item(item) for item in self._db.batch_get(self._table, keys, _BATCH_ROUNDS)
        )
        return {charge.id: charge for charge in charges}


_KEY_NAMES = {"#pk": "pk", "#c": "chargeId", "#r": "requestHash"}
_KEY_AND_CARD_NAMES = {**_KEY_NAMES, "#a": "accountId", "#s": "status"}


def _key_items(key: str, charge_id: str) -> list[dict[str, Any]]:
    """The keys of what an Idempotency-Key may have created: its own charge, an older key item."""
    return [
        {"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}},
        {"pk": {"S": f"IDEMPOTENCY#{key}"}, "sk": {"S": "IDEMPOTENCY"}},
    ]


def _key_record(
    key: str, charge_id: str, found: dict[str, dict[str, Any]]
) -> IdempotencyRecord | None:
    """The record of `get_idempotency` from the items read (by pk)."""
    own = found.get(f"CHARGE#{charge_id}")
    if own is not None:  # requestHash: Binary since issue 16, a hex string before
        return IdempotencyRecord(key, charge_id, digest_hex(own["requestHash"]))
    older = found.get(f"IDEMPOTENCY#{key}")
    if older is None or older.get("chargeId") == charge_id:
        return None  # new, or a renewal's listing left by an attempt that stopped early
    return IdempotencyRecord(key, str(older["chargeId"]), digest_hex(older["requestHash"]))


def _list_condition(partition: str, listing: Listing) -> dict[str, Any]:
    """The key condition of a listing: its partition, and `[from, to)` on `chargeSort`.

    Sort keys are "<createdAt ISO, milliseconds>#<id>", never a bare instant: `>= from` keeps a
    charge created at `from`, and `<= to` (BETWEEN) or `< to` drops one created at `to`.
    """
    values: dict[str, Any] = {":list": {"S": partition}}
    condition = "chargeList = :list"
    start, end = listing.created_from, listing.created_to
    if start is not None:
        values[":from"] = {"S": iso(start)}
    if end is not None:
        values[":to"] = {"S": iso(end)}
    if start is not None and end is not None:
        condition += " AND chargeSort BETWEEN :from AND :to"
    elif start is not None:
        condition += " AND chargeSort >= :from"
    elif end is not None:
        condition += " AND chargeSort < :to"
    return {"KeyConditionExpression": condition, "ExpressionAttributeValues": values}


def _start_key(by: ListBy, partition: str, position: str) -> dict[str, Any]:
    """ExclusiveStartKey from a position of `search` (shape checked, so a forged cursor can only
    move within the query's own partition)."""
    sort, _, pk = position.partition("|")
    sk = next((sk for shape, sk in _LISTED_ITEMS[by] if shape.fullmatch(pk)), None)
    if not _SORT_RE.fullmatch(sort) or sk is None:
        raise ValidationError(
            "the query is invalid",
            {"cursor": "must be the nextCursor of a previous page of the same query"},
        )
    return {
        "chargeList": {"S": partition},
        "chargeSort": {"S": sort},
        "pk": {"S": pk},
        "sk": {"S": sk},
    }
