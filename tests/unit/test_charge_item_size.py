"""The slim charge item (issue 16): the write-once payer facts and the Idempotency-Key go on the
charge's INVOICE item, the digests are 32-byte Binary values, false/0 flags are left out; items
written before (all of it inline, hex strings) still read, update and replay the same."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary

from payments.aws.charge_items import charge_from_item, charge_to_item, charge_update
from payments.aws.charge_store import DynamoChargeStore
from payments.aws.charge_stream import charge_change_from_stream
from payments.aws.dynamo import from_attributes, to_attributes
from payments.charges.events import charge_event_from_change, renewal_key
from payments.charges.model import (
    Charge,
    ChargeStatus,
    EpayRef,
    HistoryEntry,
    Source,
    charge_id_for_key,
)
from payments.shared.clock import iso
from payments.shared.payer import PAYER_FIELDS, Payer
from tests.fakes import make_charge

S = ChargeStatus
AT = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
PAYER = Payer(
    name="IVAN PETROV",
    email="ivan@example.kz",
    phone="77001234567",
    back_link="https://shop.example.kz/paid",
    failure_back_link="https://shop.example.kz/failed",
)
REQUEST_HASH = hashlib.sha256(b"request").hexdigest()
SECRET_DIGEST = hashlib.sha256(b"ch_x-secret").hexdigest()
KEY = "order-42"
SUB = "sub_" + "b" * 32


def new_charge(**changes: Any) -> Charge:
    """A charge as the create builds it: every payer field, a merchant key, real digests."""
    fields: dict[str, Any] = {
        "id": charge_id_for_key(KEY),
        "invoice_id": "000000011",
        "idempotency_key": KEY,
        "request_hash": REQUEST_HASH,
        "secret_hash_digest": SECRET_DIGEST,
        "payer": PAYER,
        "terminal_id": "3f1c7a52-9b4e-4d2a-8c6f-5e0b9d7a1c24",
        "created_at": AT,
        "updated_at": AT,
    }
    return make_charge(**{**fields, **changes})


def old_item(charge: Charge) -> dict[str, Any]:
    """The charge item as it was written before issue 16: payer and key inline, hex digests,
    capturePending and checkAttempts stored even when false / 0, `id` and `createdAt` as
    attributes; and before issue 13, without the list keys (`chargeSort` repeats both)."""
    item = {
        k: v
        for k, v in charge_to_item(charge).items()
        if v is not None and k not in ("chargeList", "chargeSort")
    }
    assert charge.payer is not None
    assert charge.idempotency_key is not None
    return {
        **item,
        **{k: v for k, v in charge.payer.fields().items() if v is not None},
        "idempotencyKey": charge.idempotency_key,
        "id": charge.id,
        "createdAt": iso(charge.created_at),
        "requestHash": charge.request_hash,
        "secretHashDigest": charge.secret_hash_digest,
        "capturePending": False,
        "checkAttempts": 0,
    }


def stored(item: dict[str, Any]) -> dict[str, Any]:
    """An item as DynamoDB gives it back (None left out, Binary values, Decimal numbers)."""
    return from_attributes(to_attributes(item))


# ------------------------------------------------------------------------------ what is written


def test_the_charge_item_has_no_payer_field_no_merchant_key_and_binary_digests() -> None:
    # Given a new charge with every payer field, a merchant key, no capture claim, no check yet
    charge = new_charge()
    # When it is written
    item = stored(charge_to_item(charge))
    # Then its item has no payer field, no key, and neither false/0 flag
    assert set(PAYER_FIELDS).isdisjoint(item)
    # And no id or creation time besides its keys: CHARGE#<id>, "<createdAt>#<id>"
    assert {"id", "createdAt"}.isdisjoint(item)
    assert (item["pk"], item["chargeSort"]) == (
        f"CHARGE#{charge.id}",
        f"{iso(charge.created_at)}#{charge.id}",
    )
    assert "idempotencyKey" not in item
    assert {"capturePending", "checkAttempts"}.isdisjoint(item)
    # And its digests are their 32 bytes
    assert item["requestHash"] == Binary(bytes.fromhex(REQUEST_HASH))
    assert item["secretHashDigest"] == Binary(bytes.fromhex(SECRET_DIGEST))
    # And it reads back as the charge, less the facts it does not carry (None: not read back)
    assert charge_from_item(item) == replace(charge, payer=None, idempotency_key=None)
    # And a pending capture and a check count are still written when they are set
    flagged = stored(charge_to_item(replace(charge, capture_pending=True, check_attempts=2)))
    assert (flagged["capturePending"], flagged["checkAttempts"]) == (True, 2)


def test_the_invoice_item_keeps_the_payer_facts_and_the_key_written_before_the_charge() -> None:
    # Given a new charge with every payer field
    charge = new_charge()
    # When it is created
    items = _created(charge, HistoryEntry(None, S.PROCESSING, AT, Source.API))
    # Then its invoice item, written before its charge item, keeps the payer's fields and key
    assert [str(i["sk"]).split("#")[0] for i in items] == ["INVOICE_SUFFIX", "INVOICE", "CHARGE"]
    invoice, charge_item = items[1], items[2]
    assert {k: invoice[k] for k in PAYER_FIELDS} == PAYER.fields()
    assert invoice["idempotencyKey"] == KEY
    assert invoice["chargeId"] == charge.id
    # And its charge item keeps none of them
    assert set(PAYER_FIELDS).isdisjoint(charge_item)
    assert "idempotencyKey" not in charge_item
    # And a charge without payer details writes none (no empty attributes)
    bare = _created(new_charge(payer=Payer()), HistoryEntry(None, S.PROCESSING, AT, Source.API))
    assert set(PAYER_FIELDS).isdisjoint(bare[1])
    assert bare[1]["idempotencyKey"] == KEY


def test_a_renewal_keeps_its_key_on_the_charge_item_and_its_events_name_the_subscription() -> None:
    # Given a renewal charge (its key names the subscription and cycle) and a merchant's charge
    renewal = new_charge(idempotency_key=renewal_key(SUB, 3, 1))
    merchant = new_charge()
    # When each is captured and its change comes through the stream, as Lambda delivers it
    # (JSON: Binary values as base64 text)
    events = {
        name: charge_event_from_change_of(charge, replace(charge, status=S.CAPTURED))
        for name, charge in (("renewal", renewal), ("merchant", merchant))
    }
    # Then the renewal's event still names its subscription, cycle and attempt
    assert events["renewal"]["subscription"] == {"id": SUB, "cycle": 3, "attempt": 1}
    assert events["merchant"]["subscription"] is None
    # And the renewal's item kept its key; the merchant's did not
    assert charge_to_item(renewal)["idempotencyKey"] == renewal_key(SUB, 3, 1)
    assert "idempotencyKey" not in charge_to_item(merchant)


def charge_event_from_change_of(before: Charge, after: Charge) -> dict[str, Any]:
    record = {
        "Keys": {"pk": {"S": f"CHARGE#{after.id}"}, "sk": {"S": "CHARGE"}},
        "OldImage": wire_image(before),
        "NewImage": wire_image(after),
    }
    change = charge_change_from_stream(record)
    assert change is not None
    # The digests come back as the domain's hex whatever the wire form
    assert change.charge.secret_hash_digest == SECRET_DIGEST
    event = charge_event_from_change(change.previous_status, change.charge)
    assert event is not None
    data: dict[str, Any] = event.data
    return data


def wire_image(charge: Charge) -> dict[str, Any]:
    """A stream image as Lambda's event carries it: typed JSON, Binary as base64 text."""
    typed = to_attributes(charge_to_item(charge))
    return {
        k: {"B": base64.b64encode(v["B"]).decode()} if "B" in v else v for k, v in typed.items()
    }


# ------------------------------------------------------------------------------ older items


def test_an_item_written_the_old_way_reads_back_whole() -> None:
    # Given a charge item written before issue 16 (payer and key inline, hex digests, flags)
    charge = new_charge(status=S.REQUIRES_3DS)
    item = stored(old_item(charge))
    assert item["secretHashDigest"] == SECRET_DIGEST
    # When it is read / Then it is the whole charge: payer, key, and the same hex digests
    assert charge_from_item(item) == charge
    # And the store answers its own payer without reading anything
    client = _FakeClient()
    assert DynamoChargeStore("t", client).payer(charge_from_item(item)) == PAYER
    assert client.calls == []


def test_a_status_write_never_names_the_payer_fields_or_the_key() -> None:
    # Given a charge read from an item written the old way, moving to CAPTURED
    current = charge_from_item(stored(old_item(new_charge(status=S.AUTHORIZED))))
    updated = replace(
        current, status=S.CAPTURED, captured_amount=Decimal("1500.50"), epay=EpayRef("tx-1")
    )
    # When its conditional update is built
    update = charge_update(
        "t",
        current,
        charge_to_item(replace(updated, version=current.version + 1)),
        [HistoryEntry(S.AUTHORIZED, S.CAPTURED, AT, Source.API)],
    )
    # Then it neither sets nor removes a payer field or the key: the old item keeps them
    named = set(update["ExpressionAttributeNames"].values())
    assert named.isdisjoint({*PAYER_FIELDS, "idempotencyKey"})
    # And it rewrites the digests as Binary, and removes the false/0 flags
    values = update["ExpressionAttributeValues"]
    digests = {
        update["ExpressionAttributeNames"][placeholder]: values[":" + placeholder[1:]]
        for placeholder in update["ExpressionAttributeNames"]
        if update["ExpressionAttributeNames"][placeholder] in ("requestHash", "secretHashDigest")
    }
    assert digests == {
        "requestHash": {"B": bytes.fromhex(REQUEST_HASH)},
        "secretHashDigest": {"B": bytes.fromhex(SECRET_DIGEST)},
    }
    removed = update["UpdateExpression"].split(" REMOVE ")[1].split(", ")
    names = {update["ExpressionAttributeNames"][p] for p in removed}
    assert {"capturePending", "checkAttempts"} <= names


def test_a_key_replays_against_either_form_of_the_stored_request_hash() -> None:
    # Given the key's charge stored with its request hash as Binary (now) or hex text (before)
    charge_id = charge_id_for_key(KEY)
    for value in ({"B": bytes.fromhex(REQUEST_HASH)}, {"S": REQUEST_HASH}):
        client = _FakeClient(batch=[{"pk": {"S": f"CHARGE#{charge_id}"}, "requestHash": value}])
        # When the key is looked up / Then the record carries the hex hash the request is
        # compared with (same payload: replay; another: 422)
        record = DynamoChargeStore("t", client).get_idempotency(KEY, charge_id)
        assert record is not None
        assert (record.resource_id, record.request_hash) == (charge_id, REQUEST_HASH)


# ------------------------------------------------------------------------------ the 3DS read


def test_the_payer_of_a_slim_charge_is_one_read_of_its_own_invoice_item() -> None:
    # Given a charge read back from a slim item, and its invoice item keeping the facts
    charge = charge_from_item(stored(charge_to_item(new_charge(status=S.CAPTURED))))
    assert charge.payer is None
    invoice = {
        "pk": f"INVOICE#{charge.invoice_id}",
        "sk": "INVOICE",
        "chargeId": charge.id,
        **{k: v for k, v in PAYER.fields().items() if v is not None},
    }
    client = _FakeClient(item=invoice)
    # When its payer is asked for / Then it is the invoice's, read once, strongly consistent
    assert DynamoChargeStore("t", client).payer(charge) == PAYER
    assert client.calls == [
        {
            "TableName": "t",
            "Key": {"pk": {"S": f"INVOICE#{charge.invoice_id}"}, "sk": {"S": "INVOICE"}},
            "ConsistentRead": True,
        }
    ]
    # And an invoice item that names another charge (or none) gives no payer facts
    for other in ({**invoice, "chargeId": "ch_other"}, None):
        assert DynamoChargeStore("t", _FakeClient(item=other)).payer(charge) == Payer()


class _FakeClient:
    """A DynamoDB client answering one GetItem item and one BatchGetItem page; records reads."""

    def __init__(
        self, item: dict[str, Any] | None = None, batch: list[dict[str, Any]] | None = None
    ) -> None:
        self.item, self.batch = item, batch or []
        self.calls: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {} if self.item is None else {"Item": to_attributes(self.item)}

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Responses": {"t": self.batch}}

    def put_item(self, **kwargs: Any) -> dict[str, Any]:
        self.items.append(from_attributes(kwargs["Item"]))
        return {}


def _created(charge: Charge, entry: HistoryEntry) -> list[dict[str, Any]]:
    """The items a charge's create puts, in order."""
    client = _FakeClient()
    DynamoChargeStore("t", client, clock=lambda: AT).create(charge, entry)
    return client.items
