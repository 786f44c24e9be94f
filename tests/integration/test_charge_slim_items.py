"""The slim charge item (issue 16) through the real handlers, DynamoDB Local and the simulator:
the cost bench's charge item stays under one write unit, its payer facts live on its INVOICE
item (written once, before it; read only by the 3-D Secure return), and a charge item written
the old way (payer and key inline, hex digests) still replays, verifies postLinks and redirects."""

from __future__ import annotations

import json
from typing import Any

from bench.cost_bench import EVENT_PATH, item_size
from payments.shared.payer import PAYER_FIELDS
from tests.integration.conftest import Stack, aws_calls, create_event, get_event
from tests.integration.test_postlink import PostLinkStack, pl, unknown_charge
from tests.integration.test_threeds import (
    BACK,
    FAIL,
    ThreeDS,
    acs_pares,
    query_of,
    return_event,
    start_3ds,
    threeds,
)

__all__ = ["pl", "threeds"]  # the fixtures, imported from their tests rather than copied

PAYER = {
    "name": "IVAN PETROV",
    "email": "ivan@example.kz",
    "phone": "77001234567",
    "backLink": "https://shop.example.kz/paid",
    "failureBackLink": "https://shop.example.kz/failed",
}
# A later status write's history entry (a full refund: no detail), which must still fit.
EXTRA_ENTRY = {
    "M": {
        "from": {"S": "CAPTURED"},
        "to": {"S": "REFUNDED"},
        "at": {"S": "2026-12-06T10:00:00.000Z"},
        "source": {"S": "api"},
    }
}


def bench_body() -> dict[str, Any]:
    """The cost bench's POST /charges payload: every payer field."""
    body: dict[str, Any] = json.loads(json.loads(EVENT_PATH.read_text())["body"])
    return body


def get(stack: Stack, pk: str, sk: str) -> dict[str, Any]:
    answer = stack.dynamodb.get_item(
        TableName=stack.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    )
    item: dict[str, Any] = answer.get("Item") or {}
    return item


def charge_item(stack: Stack, charge_id: str) -> dict[str, Any]:
    return get(stack, f"CHARGE#{charge_id}", "CHARGE")


def invoice_item(stack: Stack, invoice_id: str) -> dict[str, Any]:
    return get(stack, f"INVOICE#{invoice_id}", "INVOICE")


def write_the_old_way(stack: Stack, charge_id: str, key: str, payer: dict[str, str]) -> None:
    """Rewrite a charge's items as they were before issue 16: on the charge item the payer's
    fields, the key, the digests as hex text and the false/0 flags; its invoice item without
    the payer facts or the key."""
    item = charge_item(stack, charge_id)
    for name in ("requestHash", "secretHashDigest"):
        item[name] = {"S": item[name]["B"].hex()}
    item.update({name: {"S": value} for name, value in payer.items()})
    item["idempotencyKey"] = {"S": key}
    item.setdefault("capturePending", {"BOOL": False})
    item.setdefault("checkAttempts", {"N": "0"})
    stack.dynamodb.put_item(TableName=stack.table, Item=item)
    facts = [*PAYER_FIELDS, "idempotencyKey"]
    stack.dynamodb.update_item(
        TableName=stack.table,
        Key={"pk": {"S": f"INVOICE#{item['invoiceId']['S']}"}, "sk": {"S": "INVOICE"}},
        UpdateExpression="REMOVE " + ", ".join(f"#f{n}" for n in range(len(facts))),
        ExpressionAttributeNames={f"#f{n}": name for n, name in enumerate(facts)},
    )


def payer_of(item: dict[str, Any]) -> dict[str, str]:
    return {name: item[name]["S"] for name in PAYER_FIELDS if name in item}


def reads_of(calls: list[tuple[str, dict[str, Any]]], prefix: str) -> list[str]:
    """The reads (GetItem, BatchGetItem, Query) among `calls` that name a key starting with
    `prefix`."""
    reads = ("GetItem", "BatchGetItem", "Query")
    return [op for op, params in calls if op in reads and f'"{prefix}' in json.dumps(params)]


# ------------------------------------------------------------------------------ new charges


def test_a_charge_with_the_longest_description_stays_under_one_write_unit(stack: Stack) -> None:
    # Given a description of 125 bytes, the most ePay takes (Cyrillic: 2 bytes a letter), for a
    # customer known by a UUID
    description = "Оплата заказа " * 4 + "Оплата зака"
    body = {**bench_body(), "description": description}
    body["accountId"] = "6f1c2a3e-4b5d-4e6f-8a7b-9c0d1e2f3a4b"
    assert len(description.encode()) == 125
    # When it is charged (approved, captured)
    answer = stack.invoke(create_event(body, "long-key-0123456789abcdef0123456789abc"))
    assert (answer.status, answer.body["status"]) == (201, "CAPTURED")
    # Then its charge item, three history entries in, is still under 1 KB (1 WRU a status
    # write): the id and the creation time are read from its keys, not stored twice
    item = charge_item(stack, answer.body["id"])
    assert {"id", "createdAt"}.isdisjoint(item)
    assert len(item["history"]["L"]) == 3
    assert item_size(item) < 1024, item_size(item)
    # And the charge reads back with its id, creation time and description
    shown = stack.invoke(get_event(answer.body["id"]))
    assert shown.body["id"] == answer.body["id"]
    assert shown.body["createdAt"] == answer.body["createdAt"]
    assert shown.body["description"] == description


def test_the_bench_charge_item_holds_no_payer_fact_and_stays_under_one_write_unit(
    stack: Stack,
) -> None:
    # Given the cost bench's payload, with every payer field
    body = bench_body()
    assert set(PAYER_FIELDS) <= set(body)
    # When it is charged (approved, captured), recording the AWS calls
    with aws_calls() as calls:
        answer = stack.invoke(create_event(body, "bench-key-0123456789abcdef0123456789ab"))
    assert (answer.status, answer.body["status"]) == (201, "CAPTURED")
    item = charge_item(stack, answer.body["id"])
    # Then its charge item has no payer field and no key, and its digests are 32 bytes each
    assert set(PAYER_FIELDS).isdisjoint(item)
    assert "idempotencyKey" not in item
    assert {len(item[name]["B"]) for name in ("requestHash", "secretHashDigest")} == {32}
    assert {"capturePending", "checkAttempts"}.isdisjoint(item)
    # And it is under 1 KB (each status write is 1 WRU), with room for one more history entry
    assert item_size(item) < 1024, item_size(item)
    grown = {**item, "history": {"L": [*item["history"]["L"], EXTRA_ENTRY]}}
    assert item_size(grown) < 1024, item_size(grown)
    # And its invoice item keeps the payer facts and the key
    invoice = invoice_item(stack, answer.body["invoiceId"])
    assert payer_of(invoice) == {name: body[name] for name in PAYER_FIELDS}
    assert invoice["idempotencyKey"]["S"] == "bench-key-0123456789abcdef0123456789ab"
    assert invoice["chargeId"]["S"] == answer.body["id"]
    # And the create read no invoice item, wrote it once (before the charge), and its two status
    # writes named no payer field and no key
    assert reads_of(calls, "INVOICE#") == []
    writes = [
        (op, json.dumps(params, default=bytes.hex))
        for op, params in calls
        if op in ("PutItem", "UpdateItem")
    ]
    assert [op for op, text in writes if '"INVOICE#' in text] == ["PutItem"]
    charge_writes = [text for op, text in writes if '"CHARGE#' in text]
    assert len(charge_writes) == 3  # the put, AUTHORIZED, CAPTURED
    for text in charge_writes[1:]:
        assert not any(f'"{name}"' in text for name in [*PAYER_FIELDS, "idempotencyKey"])
    # And GET answers what the create answered (the view shows no payer field)
    got = stack.invoke(get_event(answer.body["id"]))
    assert got.body == answer.body
    assert set(PAYER_FIELDS).isdisjoint(got.body)


def test_the_3ds_return_reads_the_back_link_from_the_invoice_item_once(threeds: ThreeDS) -> None:
    # Given a 3DS charge with both return links: its charge item holds neither
    charge_id, fields, action = start_3ds(threeds, "slim-3ds")
    item = threeds.item(charge_id)
    assert set(PAYER_FIELDS).isdisjoint(item)
    invoice_id = item["invoiceId"]["S"]
    # When the customer comes back from the bank, having paid
    form = {"PaRes": acs_pares(action, fields, "approve"), "MD": fields["MD"]}
    with aws_calls() as calls:
        answer = threeds.call(return_event(charge_id, form))
    # Then the customer is sent to backLink, read with one GetItem of the charge's invoice item
    assert answer.status == 303
    assert answer.headers["location"].startswith(BACK.split("?")[0])
    assert query_of(answer.headers["location"])["status"] == "CAPTURED"
    assert reads_of(calls, "INVOICE#") == ["GetItem"]
    keys = [params["Key"]["pk"]["S"] for op, params in calls if op == "GetItem"]
    assert [key for key in keys if key.startswith("INVOICE#")] == [f"INVOICE#{invoice_id}"]


def test_a_declined_3ds_return_goes_to_the_failure_link_kept_on_the_invoice(
    threeds: ThreeDS,
) -> None:
    # Given a 3DS charge with both return links, kept on its invoice item
    charge_id, fields, action = start_3ds(threeds, "slim-3ds-fail")
    # When the customer fails the bank's check
    form = {"PaRes": acs_pares(action, fields, "fail"), "MD": fields["MD"]}
    answer = threeds.call(return_event(charge_id, form))
    # Then the customer is sent to failureBackLink
    assert answer.status == 303
    assert answer.headers["location"].startswith(FAIL)
    assert query_of(answer.headers["location"])["status"] == "DECLINED"


# ------------------------------------------------------------------------------ older items


def test_a_charge_written_the_old_way_replays_its_key(stack: Stack) -> None:
    # Given a charge whose items were written the old way (hex request hash, key and payer
    # inline on the charge item, none on the invoice item)
    body = bench_body()
    first = stack.invoke(create_event(body, "old-key")).body
    write_the_old_way(stack, first["id"], "old-key", {k: body[k] for k in PAYER_FIELDS})
    calls = len(stack.simulator.journal)
    # When the merchant repeats the request with the same key and payload
    again = stack.invoke(create_event(body, "old-key"))
    # Then the stored charge answers, and ePay sees nothing
    assert again.status == 200
    assert again.body["id"] == first["id"]
    assert again.body["status"] == "CAPTURED"
    assert len(stack.simulator.journal) == calls
    # And another payload with that key is refused (422), with no write
    changed = stack.invoke(create_event({**body, "amount": 1600}, "old-key"))
    assert changed.status == 422
    assert changed.body["error"]["code"] == "idempotency_key_reused"
    assert len(stack.charge_items()) == 1
    assert len(stack.simulator.journal) == calls


def test_a_postlink_for_a_charge_written_the_old_way_is_verified_and_keeps_its_payer(
    pl: PostLinkStack,
) -> None:
    # Given an UNKNOWN charge (ePay holds the money) whose items were written the old way
    charge = unknown_charge(pl, "old-postlink", **PAYER)
    write_the_old_way(pl.charges, charge["id"], "old-postlink", PAYER)
    genuine = pl.notification()
    # When a notification with a guessed secret arrives / Then the hex digest refuses it
    forged = pl.post({**genuine, "secret_hash": "guessed-secret-value-1234567890"})
    assert forged.status == 403
    assert pl.charge(charge["id"])["status"]["S"] == "UNKNOWN"
    # When ePay's own notification arrives
    answer = pl.post(genuine)
    # Then it is verified against the old item's hex digest and settles the charge
    assert answer.status == 200
    item = pl.charge(charge["id"])
    assert item["status"]["S"] == "CAPTURED"
    # And the status writes left the payer fields and the key on the old item
    assert payer_of(item) == PAYER
    assert item["idempotencyKey"]["S"] == "old-postlink"


def test_a_3ds_return_of_a_charge_written_the_old_way_redirects_to_its_own_back_link(
    threeds: ThreeDS,
) -> None:
    # Given a 3DS charge whose items were written the old way: its return links on the charge
    # item only (its invoice item has none)
    charge_id, fields, action = start_3ds(threeds, "old-3ds")
    links = {"backLink": "https://old.example.kz/done", "failureBackLink": FAIL}
    write_the_old_way(threeds.stack, charge_id, "old-3ds", links)
    assert payer_of(invoice_item(threeds.stack, threeds.item(charge_id)["invoiceId"]["S"])) == {}
    # When the customer comes back from the bank, having paid
    form = {"PaRes": acs_pares(action, fields, "approve"), "MD": fields["MD"]}
    with aws_calls() as calls:
        answer = threeds.call(return_event(charge_id, form))
    # Then the customer is sent to the charge item's own backLink, with no invoice read
    assert answer.status == 303
    assert answer.headers["location"].startswith("https://old.example.kz/done?")
    assert reads_of(calls, "INVOICE#") == []
    # And the status writes left the links and the key on the item
    item = threeds.item(charge_id)
    assert payer_of(item) == links
    assert item["idempotencyKey"]["S"] == "old-3ds"
