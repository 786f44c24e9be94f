"""A charge's id derives from its Idempotency-Key, and its create is ordered conditional puts
(invoice suffix, invoice, charge last): the keys used before, and the reservations a stopped
create leaves behind, through the charges function on DynamoDB Local and the simulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from payments import bootstrap
from payments.aws.charge_store import DynamoChargeStore
from payments.charges.model import ChargeStatus, HistoryEntry, Source, charge_id_for_key
from payments.errors import DuplicateKeyError
from tests.integration.conftest import Stack, create_event, item_charge_id
from tests.integration.test_charge_search import search

BODY = {
    "amount": 1500,
    "currency": "KZT",
    "cardId": "c0000000-0000-4000-8000-000000000001",
    "accountId": "customer-keys",
    "description": "Order 7",
}


def _put(stack: Stack, item: dict[str, Any]) -> None:
    stack.dynamodb.put_item(TableName=stack.table, Item=item)


def test_a_key_used_before_ids_were_derived_replays_its_charge(stack: Stack) -> None:
    # Given a charge, and a key of the old kind whose IDEMPOTENCY item names it (the id is not
    # the one the key would derive)
    first = stack.invoke(create_event(BODY, "order-7")).body
    charge_item = next(i for i in stack.charge_items() if item_charge_id(i) == first["id"])
    _put(
        stack,
        {
            "pk": {"S": "IDEMPOTENCY#order-7-before"},
            "sk": {"S": "IDEMPOTENCY"},
            "chargeId": {"S": first["id"]},
            "requestHash": charge_item["requestHash"],
            "expiresAt": {"N": "4102444800"},
        },
    )
    calls = len(stack.simulator.journal)
    # When the merchant retries with that key and the same body
    answer = stack.invoke(create_event(BODY, "order-7-before"))
    # Then it gets the charge the key created, and ePay sees nothing new
    assert answer.status == 200
    assert answer.body["id"] == first["id"] != charge_id_for_key("order-7-before")
    assert len(stack.simulator.journal) == calls
    assert len(stack.charge_items()) == 1
    # And with another body the old key is refused, before any write
    changed = stack.invoke(create_event({**BODY, "amount": 1600}, "order-7-before"))
    assert changed.status == 422
    assert len(stack.charge_items()) == 1


def test_reservations_left_by_a_stopped_create_are_harmless(stack: Stack) -> None:
    # Given a create that stopped after reserving an invoice (its INVOICE item names the charge
    # the key derives, listed under the account, but no charge was written)
    key, orphan = "order-8", "990000123456"
    charge_id = charge_id_for_key(key)
    _put(
        stack,
        {
            "pk": {"S": f"INVOICE#{orphan}"},
            "sk": {"S": "INVOICE"},
            "chargeId": {"S": charge_id},
            "chargeList": {"S": f"ACCOUNT#{BODY['accountId']}"},
            "chargeSort": {"S": f"2026-01-01T00:00:00.000Z#{charge_id}"},
        },
    )
    # When the merchant retries with the key
    answer = stack.invoke(create_event(BODY, key))
    # Then the charge is made once, on an invoice of its own, and ePay saw that invoice only
    assert answer.status == 201
    assert answer.body["id"] == charge_id
    assert answer.body["invoiceId"] != orphan
    assert [e.json["invoiceId"] for e in stack.auths()] == [answer.body["invoiceId"]]
    # And the account lists it once; the reserved invoice leads to no charge
    listed = search(stack, accountId=BODY["accountId"])
    assert [c["id"] for c in listed.body["data"]] == [charge_id]
    store = DynamoChargeStore(stack.table, stack.dynamodb)
    assert store.get_by_invoice(orphan) is None
    found = store.get_by_invoice(answer.body["invoiceId"])
    assert found is not None
    assert found.id == charge_id


def test_racing_creates_with_one_key_make_one_charge_and_one_auth(stack: Stack) -> None:
    # Given eight requests with one key at once (each may reserve an invoice before one wins)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: stack.invoke(create_event(BODY, "order-9")), range(8)))
    # Then one charge exists, ePay saw one auth, and every answer names that charge or says
    # it is still in flight
    assert len(stack.charge_items()) == 1
    assert len(stack.auths()) == 1
    created = [a for a in answers if a.status == 201]
    assert len(created) == 1
    assert all(a.status in (200, 201, 409) for a in answers)
    assert {a.body["id"] for a in answers if a.status in (200, 201)} == {
        charge_id_for_key("order-9")
    }
    # And the account lists that charge once, whatever the losers reserved
    listed = search(stack, accountId=BODY["accountId"])
    assert [c["id"] for c in listed.body["data"]] == [charge_id_for_key("order-9")]


def test_a_put_sent_again_after_it_succeeded_is_not_taken(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB applies every put, and then botocore sends each one again (its first answer
    # was lost in the network), so every conditional put meets the item it wrote itself
    client = bootstrap.store().client
    real = client.put_item

    def sent_twice(**request: Any) -> Any:
        real(**request)
        return real(**request)

    monkeypatch.setattr(client, "put_item", sent_twice)

    # When a charge is made
    answer = stack.invoke(create_event(BODY, "order-twice"))

    # Then it is charged once, as if each put had been answered the first time
    assert answer.status == 201, answer.body
    assert answer.body["status"] == "CAPTURED"
    assert len(stack.auths()) == 1
    assert [item_charge_id(i) for i in stack.charge_items()] == [answer.body["id"]]


def test_a_put_meeting_another_requests_item_is_still_refused(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the key's charge item exists, written by another request (its own secret's digest)
    first = stack.invoke(create_event(BODY, "order-other"))
    assert first.status == 201
    store = bootstrap.store()
    charge = store.get(first.body["id"])
    assert charge is not None
    stranger = replace(charge, secret_hash_digest="0" * 64)

    # When a create with that key writes its own charge item
    # Then the put is refused as taken, naming the charge
    with pytest.raises(DuplicateKeyError) as refused:
        store.create(
            replace(stranger, invoice_id="990000654321"),
            HistoryEntry(None, ChargeStatus.PROCESSING, charge.created_at, Source.API),
        )
    assert refused.value.which == "charge"
    assert store.get(charge.id) == charge
