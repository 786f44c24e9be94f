"""Invoice ids and the ring counters (payments.charges.invoices): the charges function takes one
slot a counter write (BLOCK is 1: blocks are off), and the store takes a block in one write and
gives it back whole when its ring is found full (DynamoInvoiceSpace on DynamoDB Local, the
simulator)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from payments.aws.invoice_space import DynamoInvoiceSpace
from payments.charges.invoices import BLOCK, SHARDS
from tests.integration.conftest import Stack, aws_calls, create_event

APPROVE = "c0000000-0000-4000-8000-000000000001"
RUN = 10  # a block, for the store's own tests
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


def test_a_containers_charges_take_one_slot_each_and_turn_the_rings(stack: Stack) -> None:
    # Given one warm container of the charges function, with the allocator's default (BLOCK 1)
    assert BLOCK == 1
    # When it makes three charges
    with aws_calls() as calls:
        answers = [stack.invoke(create_event(BODY, f"block-{n}")) for n in range(3)]

    # Then each is captured with its own invoice id
    assert [(a.status, a.body["status"]) for a in answers] == [(201, "CAPTURED")] * 3
    invoices = [a.body["invoiceId"] for a in answers]
    assert len(set(invoices)) == len(invoices)
    # And each took its slot in a counter write of its own, from the next ring in turn: the
    # order in which a ring hands out its slots is the order in which they are used
    writes = counter_steps(calls)
    counts = [w["ExpressionAttributeValues"][":count"]["N"] for w in writes]  # type: ignore[index]
    assert counts == ["1", "1", "1"]
    shards = [int(i[-6:]) % SHARDS for i in invoices]
    assert shards[1:] == [(shards[0] + 1) % SHARDS, (shards[0] + 2) % SHARDS]
    # And ePay saw exactly those invoices, one auth each
    assert sorted(e.json["invoiceId"] for e in stack.auths()) == sorted(invoices)


def test_a_ring_marked_full_gets_the_rest_of_a_block_back_unless_another_block_was_taken(
    stack: Stack,
) -> None:
    # Given a ring from which one container took a block of RUN slots
    space = DynamoInvoiceSpace(stack.table, stack.dynamodb)
    now = datetime.now(UTC)
    until = now + timedelta(hours=1)
    ticket = space.take("term-a", 3, now, RUN)
    assert (ticket.first, ticket.n, ticket.count) == (1, RUN, RUN)

    # When it finds slot 4 still held by the previous lap and marks the ring full
    space.mark_full("term-a", 3, 4, until, ticket.n)

    # Then slots 4 to RUN go back (the counter is at 3) and the ring is full until then
    key = {"pk": {"S": "INVOICE_RING#term-a#03"}, "sk": {"S": "RING"}}
    ring = stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True)["Item"]
    assert ring["n"] == {"N": "3"}
    assert ring["fullUntil"] == {"N": str(int(until.timestamp()))}
    assert space.take("term-a", 3, now, RUN).full_until is not None

    # Given another ring where a second container took the block after the first one's
    first = space.take("term-b", 5, now, RUN)
    second = space.take("term-b", 5, now, RUN)
    assert second.first == first.n + 1

    # When the first container marks that ring full at its slot 2
    space.mark_full("term-b", 5, 2, until, first.n)

    # Then no slot goes back (the later block is in use) but the ring is marked full
    key = {"pk": {"S": "INVOICE_RING#term-b#05"}, "sk": {"S": "RING"}}
    ring = stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True)["Item"]
    assert ring["n"] == {"N": str(2 * RUN)}
    assert "fullUntil" in ring
