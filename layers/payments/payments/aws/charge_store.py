"""DynamoDB access for charges: one table, conditional writes and transactions only.

Items (pk / sk):
  CHARGE#<id>            / CHARGE             the charge, with `status`, `version` and `history`
                                              (its transitions, oldest first: each write appends
                                              its own, so a status change is one conditional
                                              write of one item, never a transaction)
  CHARGE#<id>            / HISTORY#<version>  one transition of a charge written before history
                                              moved into the charge item (read, never written)
  IDEMPOTENCY#<key>      / IDEMPOTENCY        the charge a key created and the request's hash (TTL;
                                              a renewal's key has none: it lists the charge)
  INVOICE#<invoiceId>    / INVOICE            an invoice id is used once, forever
  INVOICE_SUFFIX#<terminal>#<last6>           the last six digits are unique per terminal while
                         / INVOICE_SUFFIX     reserved (TTL: the window); the rings that deal
                                              them out: payments.aws.invoice_space
  INBOX#<sha256 of body> / INBOX              a raw postLink notification and its verdict (TTL;
                                              written by payments.aws.inbox)
  TERMINAL#<terminal id> / TERMINAL           the terminal's 8-digit code, written once when the
                                              status API first names it (charges.terminals)

ChargeListIndex (KEYS_ONLY; `chargeList` / `chargeSort` = "<createdAt ISO>#<charge id>") answers
`GET /charges` (payments.charges.search), one partition per query:
  STATUS#<status>      on the charge item: moves with every status change (the only key that does)
  ACCOUNT#<accountId>  on the charge's INVOICE item: written once (HISTORY#000001 before)
  SUB#<subscriptionId> on a renewal charge's IDEMPOTENCY item (sparse): written once (its INVOICE
                       item before)
No item is added for it; charges written before the index appear under their status at their next
write, and under their account or subscription not at all (no backfill).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from payments.aws.dynamo import (
    DynamoCalls,
    _epoch,
    _put_new,
    due_keys,
    from_attributes,
    to_attributes,
)
from payments.aws.invoice_space import suffix_guard
from payments.charges.events import parse_renewal_key
from payments.charges.model import (
    DUE_SHARDS,
    CaptureMode,
    Charge,
    ChargeError,
    ChargeStatus,
    EpayRef,
    HistoryEntry,
    Source,
    ThreeDSData,
)
from payments.charges.search import ListBy, Listing
from payments.errors import ValidationError
from payments.shared.clock import from_iso, from_iso_or_none, iso
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


def due_shard(charge_id: str) -> str:
    """The partition of the due-for-check index a charge falls in (spreads the reconciler)."""
    digest = hashlib.sha256(charge_id.encode()).digest()
    return f"DUE#{digest[0] % DUE_SHARDS}"


def list_sort(charge: Charge) -> str:
    """A charge's sort key in ChargeListIndex: newest first is descending order."""
    return f"{iso(charge.created_at)}#{charge.id}"


def list_keys(by: ListBy, value: str, charge: Charge) -> dict[str, str]:
    """The ChargeListIndex keys that list `charge` in the partition `by` `value`."""
    return {"chargeList": f"{by.value}#{value}", "chargeSort": list_sort(charge)}


def charge_to_item(charge: Charge) -> dict[str, Any]:
    """The DynamoDB attributes (plain Python values) of a charge."""
    three_ds = charge.three_ds
    return {
        "pk": f"CHARGE#{charge.id}",
        "sk": "CHARGE",
        # Listed under its status (ChargeListIndex): the index write of a status change.
        **list_keys(ListBy.STATUS, charge.status.value, charge),
        "id": charge.id,
        "invoiceId": charge.invoice_id,
        "terminalId": charge.terminal_id or None,
        "status": charge.status.value,
        "version": charge.version,
        "amount": charge.amount,
        "currency": charge.currency,
        "accountId": charge.account_id,
        "cardId": charge.card_id,
        "description": charge.description,
        "capture": charge.capture.value,
        "recurrent": charge.recurrent,
        "language": charge.language,
        "idempotencyKey": charge.idempotency_key,
        "requestHash": charge.request_hash,
        "secretHashDigest": charge.secret_hash_digest,
        "createdAt": iso(charge.created_at),
        "updatedAt": iso(charge.updated_at),
        "invoiceIdAlt": charge.invoice_id_alt,
        **charge.payer.fields(),
        "capturedAmount": charge.captured_amount,
        "capturePending": charge.capture_pending,
        "captureClaimedAt": iso(charge.capture_claimed_at) if charge.capture_claimed_at else None,
        "checkAttempts": charge.check_attempts,
        "refundedAmount": charge.refunded_amount or None,
        "refundReserved": charge.refund_reserved or None,
        "voidPending": charge.void_pending or None,
        # The reconciler's sparse index: only charges due for a check carry these two keys.
        "dueShard": None if charge.next_check_at is None else due_shard(charge.id),
        "nextCheckAt": None if charge.next_check_at is None else iso(charge.next_check_at),
        "epay": {
            k: v
            for k, v in {
                "transactionId": charge.epay.transaction_id,
                "reference": charge.epay.reference,
                "approvalCode": charge.epay.approval_code,
                "cardMask": charge.epay.card_mask,
            }.items()
            if v is not None
        },
        "error": None
        if charge.error is None
        else {
            "code": charge.error.code,
            "message": charge.error.message,
            "category": charge.error.category,
        },
        "threeDS": None
        if three_ds is None
        else {
            k: v
            for k, v in {
                "paReq": three_ds.pa_req,
                "md": three_ds.md,
                "action": three_ds.action,
                "accessToken": three_ds.access_token,
                "tokenExpiresAt": iso(three_ds.token_expires_at),
                "termUrl": three_ds.term_url,
                "pageNonce": three_ds.page_nonce,
                "pageTokenDigest": three_ds.page_token_digest,
                "pageServedAt": iso(three_ds.page_served_at) if three_ds.page_served_at else None,
                "returnedAt": iso(three_ds.returned_at) if three_ds.returned_at else None,
                "mdIsDigest": three_ds.md_is_digest or None,
            }.items()
            if v not in (None, "")
        },
    }


def charge_from_item(item: Mapping[str, Any]) -> Charge:
    """Rebuild a charge from its DynamoDB attributes (plain Python values)."""
    epay = item.get("epay") or {}
    error = item.get("error")
    three_ds = item.get("threeDS")
    captured = item.get("capturedAmount")
    return Charge(
        id=str(item["id"]),
        invoice_id=str(item["invoiceId"]),
        status=ChargeStatus(item["status"]),
        version=int(item["version"]),
        amount=Decimal(item["amount"]),
        currency=str(item["currency"]),
        account_id=str(item["accountId"]),
        card_id=str(item["cardId"]),
        description=str(item["description"]),
        capture=CaptureMode(item["capture"]),
        recurrent=bool(item["recurrent"]),
        language=str(item["language"]),
        idempotency_key=str(item["idempotencyKey"]),
        request_hash=str(item["requestHash"]),
        secret_hash_digest=str(item["secretHashDigest"]),
        created_at=from_iso(item["createdAt"]),
        updated_at=from_iso(item["updatedAt"]),
        invoice_id_alt=item.get("invoiceIdAlt"),
        payer=Payer.from_fields(item),
        captured_amount=Decimal(captured) if captured is not None else None,
        capture_pending=bool(item.get("capturePending", False)),
        capture_claimed_at=from_iso_or_none(item.get("captureClaimedAt")),
        check_attempts=int(item.get("checkAttempts", 0)),
        terminal_id=str(item.get("terminalId") or ""),
        refunded_amount=Decimal(item.get("refundedAmount") or 0),
        refund_reserved=Decimal(item.get("refundReserved") or 0),
        void_pending=bool(item.get("voidPending", False)),
        next_check_at=from_iso_or_none(item.get("nextCheckAt")),
        epay=EpayRef(
            transaction_id=epay.get("transactionId"),
            reference=epay.get("reference"),
            approval_code=epay.get("approvalCode"),
            card_mask=epay.get("cardMask"),
        ),
        error=None
        if not error
        else ChargeError(str(error["code"]), str(error["message"]), str(error["category"])),
        three_ds=None
        if not three_ds
        else ThreeDSData(
            pa_req=str(three_ds.get("paReq", "")),
            md=str(three_ds["md"]),
            action=str(three_ds["action"]),
            access_token=str(three_ds.get("accessToken", "")),
            token_expires_at=from_iso(three_ds["tokenExpiresAt"]),
            term_url=three_ds.get("termUrl"),
            page_nonce=three_ds.get("pageNonce"),
            page_token_digest=three_ds.get("pageTokenDigest"),
            page_served_at=from_iso(three_ds["pageServedAt"])
            if three_ds.get("pageServedAt")
            else None,
            returned_at=from_iso_or_none(three_ds.get("returnedAt")),
            md_is_digest=bool(three_ds.get("mdIsDigest", False)),
        ),
    )


def new_charge_item(charge: Charge, entry: HistoryEntry) -> dict[str, Any]:
    """A new charge's item, its history holding its first entry."""
    return {**charge_to_item(charge), "history": [_history_value(entry)]}


def invoice_listing(charge: Charge) -> dict[str, str]:
    """What the invoice item of a charge carries to list it under its account (written once)."""
    return list_keys(ListBy.ACCOUNT, charge.account_id, charge)


def _invoice_item(charge: Charge) -> dict[str, Any]:
    """The invoice's guard, listing the charge under its account."""
    return {
        "pk": f"INVOICE#{charge.invoice_id}",
        "sk": "INVOICE",
        "chargeId": charge.id,
        **invoice_listing(charge),
    }


def _canonical(number: Decimal) -> Decimal:
    return Decimal(format(number.normalize(), "f"))


def _history_value(entry: HistoryEntry) -> dict[str, Any]:
    return {
        k: v
        for k, v in {
            "from": entry.from_status.value if entry.from_status else None,
            "to": entry.to_status.value,
            "at": iso(entry.at),
            "source": str(entry.source),
            "detail": entry.detail or None,
        }.items()
        if v is not None
    }


def _history_entry(value: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        from_status=ChargeStatus(value["from"]) if value.get("from") else None,
        to_status=ChargeStatus(value["to"]),
        at=from_iso(value["at"]),
        source=Source(value["source"]),
        detail=str(value.get("detail") or ""),
    )


def _charge_update(
    table: str, current: Charge, item: dict[str, Any], entries: list[HistoryEntry]
) -> dict[str, Any]:
    """An Update replacing every attribute of a charge item with `item`'s (REMOVE for the ones
    now None) and appending `entries` to its history, if its status and version are still
    `current`'s: the same write as a Put of the whole item, without restating the history."""
    # Numbers as DynamoDB keeps them ("300.00" is stored "300"), as a Put would have left them.
    attributes = {
        k: _canonical(v) if isinstance(v, Decimal) else v
        for k, v in item.items()
        if k not in ("pk", "sk")
    }
    names = {f"#a{n}": name for n, name in enumerate(attributes)}
    placeholder = {name: key for key, name in names.items()}
    sets = [
        f"{placeholder[k]} = :a{n}" for n, (k, v) in enumerate(attributes.items()) if v is not None
    ]
    removes = [placeholder[k] for k, v in attributes.items() if v is None]
    values = to_attributes(
        {f":a{n}": v for n, v in enumerate(attributes.values()) if v is not None}
    )
    if entries:
        names["#h"] = "history"
        values[":h"] = to_attributes({"h": [_history_value(e) for e in entries]})["h"]
        values[":none"] = {"L": []}
        sets.append("#h = list_append(if_not_exists(#h, :none), :h)")
    values[":status"] = {"S": current.status.value}
    values[":version"] = {"N": str(current.version)}
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    return {
        "TableName": table,
        "Key": to_attributes({"pk": item["pk"], "sk": item["sk"]}),
        "UpdateExpression": expression,
        "ConditionExpression": f"{placeholder['status']} = :status AND "
        f"{placeholder['version']} = :version",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


class DynamoChargeStore:
    """Charges, their history, idempotency keys and invoice ids in one DynamoDB table."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        *,
        clock: Callable[[], datetime] | None = None,
        idempotency_ttl: timedelta = timedelta(days=30),
        invoice_suffix_ttl: timedelta = timedelta(days=400),
    ) -> None:
        self._table = table_name
        self.client = client  # shared with the other stores of the table (one client a container)
        self._db = DynamoCalls(client)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._idempotency_ttl = idempotency_ttl
        self._suffix_ttl = invoice_suffix_ttl

    def create(self, charge: Charge, entry: HistoryEntry) -> None:
        """Write the charge (its history holding `entry`), its idempotency key, its invoice id and
        suffix in one transaction; raises DuplicateKeyError naming the guard that held."""
        now = self._clock()
        renewal = parse_renewal_key(charge.idempotency_key)
        # A renewal's key lists its charge under the subscription, so it is kept (no TTL).
        keeps = (
            {"expiresAt": _epoch(now + self._idempotency_ttl)}
            if renewal is None
            else list_keys(ListBy.SUBSCRIPTION, renewal[0], charge)
        )
        items = [
            _put_new(self._table, new_charge_item(charge, entry)),
            _put_new(
                self._table,
                {
                    "pk": f"IDEMPOTENCY#{charge.idempotency_key}",
                    "sk": "IDEMPOTENCY",
                    "chargeId": charge.id,
                    "requestHash": charge.request_hash,
                    **keeps,
                },
            ),
            _put_new(self._table, _invoice_item(charge)),
            suffix_guard(
                self._table,
                charge.terminal_id,
                charge.invoice_id,
                {"chargeId": charge.id},
                now + self._suffix_ttl,
                now,
            ),
        ]
        names = ["charge", "idempotency", "invoice", "invoice_suffix"]
        self._db.write(items, names)

    def get(self, charge_id: str) -> Charge | None:
        """Read a charge (strongly consistent), or None."""
        item = self._db.get(self._table, f"CHARGE#{charge_id}", "CHARGE")
        return charge_from_item(item) if item else None

    def get_by_invoice(self, invoice_id: str) -> Charge | None:
        """The charge an invoice id belongs to (`INVOICE#<id>` holds its chargeId), or None: no
        such invoice, or a card setup's that has no charge (payments.aws.card_store)."""
        item = self._db.get(self._table, f"INVOICE#{invoice_id}", "INVOICE")
        return self.get(str(item["chargeId"])) if item and item.get("chargeId") else None

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """Read what an idempotency key created, or None if the key is new."""
        item = self._db.get(self._table, f"IDEMPOTENCY#{key}", "IDEMPOTENCY")
        if item is None:
            return None
        return IdempotencyRecord(key, str(item["chargeId"]), str(item["requestHash"]))

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
        update = _charge_update(self._table, current, charge_to_item(stored), entries)
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
        return [_history_entry(value) for value in [*older, *own]]

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
        ids = [str(item["chargeSort"]["S"]).split("#", 1)[1] for item in answer.get("Items", [])]
        found = self._batch_get(ids)
        last = answer.get("LastEvaluatedKey")
        position = f"{last['chargeSort']['S']}|{last['pk']['S']}" if last else None
        return [found[i] for i in ids if i in found], position

    def _batch_get(self, ids: list[str]) -> dict[str, Charge]:
        keys = [{"pk": {"S": f"CHARGE#{i}"}, "sk": {"S": "CHARGE"}} for i in dict.fromkeys(ids)]
        charges = (
            charge_from_item(item) for item in self._db.batch_get(self._table, keys, _BATCH_ROUNDS)
        )
        return {charge.id: charge for charge in charges}


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
