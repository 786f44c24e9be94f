"""POST /charges reads the saved card in the Idempotency-Key's BatchGetItem: a new charge makes
one read request before its writes, and the card rules (removed: 409, another account's: 422, a
card never seen passes) hold as before, refusing before any write or ePay call. The charges
function runs in-process against DynamoDB Local and the simulator; the tier's IAM check holds
every request to the function's statements in template.yaml."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from payments.aws.card_store import card_to_item
from payments.aws.dynamo import to_attributes
from payments.cards.model import Card, CardSource, CardStatus
from payments.charges.model import charge_id_for_key
from tests.integration.conftest import Stack, aws_calls, create_event

ACCOUNT = "customer-42"
APPROVE = "c0000000-0000-4000-8000-000000000001"
SINGLE_STAGE = "c0000000-0000-4000-8000-000000000002"
BODY: dict[str, Any] = {
    "amount": 1500,
    "currency": "KZT",
    "cardId": APPROVE,
    "accountId": ACCOUNT,
    "description": "Order 42",
}
DYNAMODB_READS = ("GetItem", "BatchGetItem", "Query", "Scan")
DYNAMODB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems")

Calls = list[tuple[str, dict[str, Any]]]


def save_card(stack: Stack, status: CardStatus, account: str = ACCOUNT) -> None:
    """A saved card item for APPROVE, as the card setup (or a removal) writes it."""
    now = datetime.now(UTC)
    card = Card(
        id=APPROVE,
        account_id=account,
        status=status,
        source=CardSource.SETUP,
        created_at=now,
        updated_at=now,
        removed_at=now if status is CardStatus.REMOVED else None,
    )
    stack.dynamodb.put_item(TableName=stack.table, Item=to_attributes(card_to_item(card)))


def warm(stack: Stack) -> None:
    """One charge (another card, another key) so the container has what it keeps: the
    terminals and the invoice lane (read once a container, then cached)."""
    answer = stack.invoke(create_event({**BODY, "cardId": SINGLE_STAGE}, "warm-up"))
    assert answer.status == 201, answer.raw


def table_requests(calls: Calls) -> Calls:
    """The DynamoDB requests among `calls` (Secrets Manager and the like left out)."""
    return [(op, params) for op, params in calls if op in DYNAMODB_READS + DYNAMODB_WRITES]


def before_first_write(calls: Calls) -> Calls:
    requests = table_requests(calls)
    first = next((n for n, (op, _) in enumerate(requests) if op in DYNAMODB_WRITES), None)
    return requests[:first]


def batch_keys(params: dict[str, Any]) -> list[str]:
    (request,) = params["RequestItems"].values()
    return [key["pk"]["S"] for key in request["Keys"]]


def card_gets(calls: Calls) -> list[str]:
    return [op for op, params in calls if op == "GetItem" and '"CARD#' in json.dumps(params)]


def test_a_new_charge_reads_its_key_and_its_card_in_one_request(stack: Stack) -> None:
    # Given a saved, active card of the account, and a warm container
    save_card(stack, CardStatus.ACTIVE)
    warm(stack)
    # When the merchant charges it with a new key, recording the AWS requests
    with aws_calls() as calls:
        answer = stack.invoke(create_event(BODY, "prefetch-1"))
    # Then it is charged
    assert (answer.status, answer.body["status"]) == (201, "CAPTURED")
    # And exactly one read came before the first write: the BatchGetItem of the key's charge,
    # the key's older item and the card, strongly consistent
    reads = before_first_write(calls)
    assert [op for op, _ in reads] == ["BatchGetItem"], reads
    charge_id = charge_id_for_key("prefetch-1")
    assert batch_keys(reads[0][1]) == [
        f"CHARGE#{charge_id}",
        "IDEMPOTENCY#prefetch-1",
        f"CARD#{APPROVE}",
    ]
    (request,) = reads[0][1]["RequestItems"].values()
    assert request["ConsistentRead"] is True
    # And the card was never read on its own
    assert card_gets(calls) == []


def test_a_card_never_seen_still_charges_with_the_same_one_read(stack: Stack) -> None:
    # Given a card the service has never seen (saved before it existed): no CARD item; and a
    # warm container
    warm(stack)
    assert not [i for i in stack.items() if i["pk"]["S"] == f"CARD#{APPROVE}"]
    journal = len(stack.simulator.journal)
    # When the merchant charges it
    with aws_calls() as calls:
        answer = stack.invoke(create_event(BODY, "prefetch-unknown"))
    # Then it is charged (token, auth, capture at ePay), after the one BatchGetItem, which
    # found no card
    assert (answer.status, answer.body["status"]) == (201, "CAPTURED")
    assert [op for op, _ in before_first_write(calls)] == ["BatchGetItem"]
    assert card_gets(calls) == []
    ops = [e.op for e in stack.simulator.journal[journal:]]
    assert ops == ["token", "auth", "token", "charge"]


def test_a_removed_card_is_refused_with_one_read_no_write_and_no_epay_call(stack: Stack) -> None:
    # Given the account's card, removed
    save_card(stack, CardStatus.REMOVED)
    items = len(stack.items())
    # When the merchant charges it
    with aws_calls() as calls:
        answer = stack.invoke(create_event(BODY, "prefetch-removed"))
    # Then it is refused as before (409), having made one read and nothing else
    assert (answer.status, answer.body["error"]["code"]) == (409, "card_removed")
    assert answer.body["error"]["message"] == "the card was removed from the account"
    assert [op for op, _ in table_requests(calls)] == ["BatchGetItem"]
    # And nothing was written, and ePay saw nothing
    assert len(stack.items()) == items
    assert stack.simulator.journal == []


def test_another_accounts_card_is_refused_with_no_write_and_no_epay_call(stack: Stack) -> None:
    # Given a card saved under another account
    save_card(stack, CardStatus.ACTIVE, account="someone-else")
    items = len(stack.items())
    # When this account charges it
    with aws_calls() as calls:
        answer = stack.invoke(create_event(BODY, "prefetch-other"))
    # Then it is refused as before (422), having made one read and nothing else
    assert (answer.status, answer.body["error"]["code"]) == (422, "card_account_mismatch")
    assert answer.body["error"]["message"] == "the card is saved under another account"
    assert [op for op, _ in table_requests(calls)] == ["BatchGetItem"]
    # And nothing was written, and ePay saw nothing
    assert len(stack.items()) == items
    assert stack.simulator.journal == []


def test_a_replayed_key_answers_its_charge_even_once_the_card_is_removed(stack: Stack) -> None:
    # Given a charge made on an active card, which was then removed
    save_card(stack, CardStatus.ACTIVE)
    first = stack.invoke(create_event(BODY, "prefetch-replay"))
    assert first.status == 201
    save_card(stack, CardStatus.REMOVED)
    journal = len(stack.simulator.journal)
    # When the merchant repeats the request with the same key
    with aws_calls() as calls:
        again = stack.invoke(create_event(BODY, "prefetch-replay"))
    # Then the stored charge answers (the card read alongside is unused), and ePay sees nothing
    assert again.status == 200
    assert again.body == first.body
    assert len(stack.simulator.journal) == journal
    assert [op for op, _ in table_requests(calls) if op in DYNAMODB_WRITES] == []
