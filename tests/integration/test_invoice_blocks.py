"""Invoice ids taken in blocks (payments.charges.invoices BLOCK): one ring counter write for a
container's BLOCK charges, and a block given back whole when its ring is found full (charges
function and DynamoInvoiceSpace on DynamoDB Local, the simulator)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from payments.aws.invoice_space import DynamoInvoiceSpace
from payments.charges.invoices import BLOCK, SHARDS
from tests.integration.conftest import Stack, aws_calls, create_event

APPROVE = "c0000000-0000-4000-8000-000000000001"
BODY = {"amount": 500, "currency": "KZT", "cardId": APPROVE, "accountId": "c-1",
        "description": "Order 1", "recurrent": False}  # fmt: skip


def counter_steps(calls: list[tuple[str, dict[str, object]]]) -> list[dict[str, object]]:
    """The ring counter writes among `calls` (not a ring's marks, written every 1/MARKS lap)."""
    return [
        params
        for operation, params in calls
        if operation == "UpdateItem"
        and "INVOICE_RING#" in json.dumps(params["Key"])
        and str(params["UpdateExpression"]).startswith("ADD n ")
    ]


def test_a_containers_charges_take_their_invoice_ids_a_block_at_a_time(stack: Stack) -> None:
    # Given one warm container of the charges function
    # When it makes BLOCK + 2 charges
    with aws_calls() as calls:
        answers = [stack.invoke(create_event(BODY, f"block-{n}")) for n in range(BLOCK + 2)]

    # Then each is captured with its own invoice id
    assert [a.status for a in answers] == [201] * (BLOCK + 2)
    assert {a.body["status"] for a in answers} == {"CAPTURED"}
    invoices = [a.body["invoiceId"] for a in answers]
    assert len(set(invoices)) == len(invoices)
    # And the ring counters were written twice: a block of BLOCK slots each time
    writes = counter_steps(calls)
    assert len(writes) == 2
    assert all(w["ExpressionAttributeValues"][":count"] == {"N": str(BLOCK)} for w in writes)  # type: ignore[index]
    # And the first BLOCK charges used consecutive slots of one ring, then the next ring
    slots = [int(i[-6:]) for i in invoices]
    shards = [s % SHARDS for s in slots]
    assert len(set(shards[:BLOCK])) == 1
    assert [s // SHARDS for s in slots[:BLOCK]] == list(range(BLOCK))
    assert shards[BLOCK] == (shards[0] + 1) % SHARDS
    # And ePay saw exactly those invoices, one auth each
    assert sorted(e.json["invoiceId"] for e in stack.auths()) == sorted(invoices)


def test_a_ring_marked_full_gets_the_rest_of_a_block_back_unless_another_block_was_taken(
    stack: Stack,
) -> None:
    # Given a ring from which one container took a block of BLOCK slots
    space = DynamoInvoiceSpace(stack.table, stack.dynamodb)
    now = datetime.now(UTC)
    until = now + timedelta(hours=1)
    ticket = space.take("term-a", 3, now, BLOCK)
    assert (ticket.first, ticket.n, ticket.count) == (1, BLOCK, BLOCK)

    # When it finds slot 4 still held by the previous lap and marks the ring full
    space.mark_full("term-a", 3, 4, until, ticket.n)

    # Then slots 4 to BLOCK go back (the counter is at 3) and the ring is full until then
    key = {"pk": {"S": "INVOICE_RING#term-a#03"}, "sk": {"S": "RING"}}
    ring = stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True)["Item"]
    assert ring["n"] == {"N": "3"}
    assert ring["fullUntil"] == {"N": str(int(until.timestamp()))}
    assert space.take("term-a", 3, now, BLOCK).full_until is not None

    # Given another ring where a second container took the block after the first one's
    first = space.take("term-b", 5, now, BLOCK)
    second = space.take("term-b", 5, now, BLOCK)
    assert second.first == first.n + 1

    # When the first container marks that ring full at its slot 2
    space.mark_full("term-b", 5, 2, until, first.n)

    # Then no slot goes back (the later block is in use) but the ring is marked full
    key = {"pk": {"S": "INVOICE_RING#term-b#05"}, "sk": {"S": "RING"}}
    ring = stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True)["Item"]
    assert ring["n"] == {"N": str(2 * BLOCK)}
    assert "fullUntil" in ring
