"""A charge as DynamoDB items: its attributes, its history entries, its listing keys, and the
conditional update that is every status change (payments.aws.charge_store writes them).

The charge item is kept under 1 KB (1 WRU a status write; issue 16, decisions 2026-12-06): the
write-once facts no status write needs (the payer's fields, the Idempotency-Key) are on the
charge's INVOICE item (`invoice_facts`), the two SHA-256 digests are 32-byte Binary values, and
`capturePending` / `checkAttempts` are left out while false / 0. Items written before keep all of
it inline as hex strings; `charge_from_item` reads both forms.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary

from payments.aws.dynamo import to_attributes
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
from payments.charges.search import ListBy, status_partition
from payments.shared.clock import from_iso, from_iso_or_none, iso
from payments.shared.payer import PAYER_FIELDS, Payer

_HEX_DIGEST = re.compile(r"\A[0-9a-f]{64}\Z")


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


def digest_value(hex_digest: str) -> bytes | str:
    """A SHA-256 digest as the charge item keeps it: its 32 bytes (a Binary value, half the
    size of its hex); a value that is not a lowercase hex digest is kept as it is."""
    return bytes.fromhex(hex_digest) if _HEX_DIGEST.fullmatch(hex_digest) else hex_digest


def digest_hex(value: Any) -> str:
    """A digest as the domain uses it (lowercase hex), from the Binary value written since
    issue 16 or the hex string of an item written before."""
    if isinstance(value, Binary):
        value = value.value
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)


def invoice_facts(charge: Charge) -> dict[str, str]:
    """What a charge's INVOICE item keeps for it, written once with it: the payer's fields
    (those given) and the Idempotency-Key. The charge item does not carry them; the 3-D Secure
    return reads them back (DynamoChargeStore.payer)."""
    payer = {} if charge.payer is None else charge.payer.fields()
    facts = {name: value for name, value in payer.items() if value is not None}
    if charge.idempotency_key is not None:
        facts["idempotencyKey"] = charge.idempotency_key
    return facts


def _kept_key(charge: Charge) -> dict[str, str]:
    """The Idempotency-Key the charge item still carries: a renewal's only, which names the
    subscription and cycle its stream events tell (charges.events.charge_event)."""
    key = charge.idempotency_key
    return {"idempotencyKey": key} if key is not None and parse_renewal_key(key) else {}


def charge_to_item(charge: Charge) -> dict[str, Any]:
    """The DynamoDB attributes (plain Python values) of a charge.

    A None value is an attribute the charge does not have (an update REMOVEs it); the payer's
    fields and a merchant's Idempotency-Key are never among them (`invoice_facts`), so an update
    leaves those of an item written before issue 16 as they are. Neither are the id and the
    creation time: the keys carry them (`pk` is CHARGE#<id>, `chargeSort` <createdAt>#<id>), and
    the 70 bytes they took kept a charge with a long Cyrillic description above the 1 KB of one
    write unit."""
    three_ds = charge.three_ds
    return {
        "pk": f"CHARGE#{charge.id}",
        "sk": "CHARGE",
        # Listed under its status (ChargeListIndex), the open ones under OPEN: the index write
        # of a change to or from a settled status.
        **list_keys(ListBy.STATUS, status_partition(charge.status), charge),
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
        **_kept_key(charge),
        "requestHash": digest_value(charge.request_hash),
        "secretHashDigest": digest_value(charge.secret_hash_digest),
        "updatedAt": iso(charge.updated_at),
        "invoiceIdAlt": charge.invoice_id_alt,
        "capturedAmount": charge.captured_amount,
        "capturePending": charge.capture_pending or None,
        "captureClaimedAt": iso(charge.capture_claimed_at) if charge.capture_claimed_at else None,
        "checkAttempts": charge.check_attempts or None,
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
    """Rebuild a charge from its DynamoDB attributes (plain Python values).

    `payer` and `idempotency_key` are None unless the item carries them (one written before
    issue 16, or a renewal's key): they are on the charge's INVOICE item. The id and the
    creation time come from the keys, or from `id` and `createdAt` on an item written before."""
    epay = item.get("epay") or {}
    error = item.get("error")
    three_ds = item.get("threeDS")
    captured = item.get("capturedAmount")
    return Charge(
        id=str(item["id"]) if "id" in item else str(item["pk"]).removeprefix("CHARGE#"),
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
        idempotency_key=None if item.get("idempotencyKey") is None else str(item["idempotencyKey"]),
        request_hash=digest_hex(item["requestHash"]),
        secret_hash_digest=digest_hex(item["secretHashDigest"]),
        created_at=from_iso(
            item["createdAt"] if "createdAt" in item else str(item["chargeSort"]).split("#")[0]
        ),
        updated_at=from_iso(item["updatedAt"]),
        invoice_id_alt=item.get("invoiceIdAlt"),
        payer=Payer.from_fields(item) if any(name in item for name in PAYER_FIELDS) else None,
        captured_amount=Decimal(captured) if captured is not None else None,
        capture_pending=bool(item.get("capturePending")),
        capture_claimed_at=from_iso_or_none(item.get("captureClaimedAt")),
        check_attempts=int(item.get("checkAttempts") or 0),
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
    return {**charge_to_item(charge), "history": [history_value(entry)]}


def invoice_listing(charge: Charge) -> dict[str, str]:
    """What the invoice item of a charge carries to list it under its account (written once)."""
    return list_keys(ListBy.ACCOUNT, charge.account_id, charge)


def _canonical(number: Decimal) -> Decimal:
    return Decimal(format(number.normalize(), "f"))


def history_value(entry: HistoryEntry) -> dict[str, Any]:
    """One history entry as the charge item keeps it."""
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


def history_entry(value: Mapping[str, Any]) -> HistoryEntry:
    """One kept history entry (in the charge item, or a HISTORY# item of an older charge)."""
    return HistoryEntry(
        from_status=ChargeStatus(value["from"]) if value.get("from") else None,
        to_status=ChargeStatus(value["to"]),
        at=from_iso(value["at"]),
        source=Source(value["source"]),
        detail=str(value.get("detail") or ""),
    )


def charge_update(
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
        values[":h"] = to_attributes({"h": [history_value(e) for e in entries]})["h"]
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
