"""A new charge's card is read with its Idempotency-Key (one BatchGetItem) and checked from that
read: the store's lookup, the card rules on a snapshot, and a read left unprocessed never taken
for a card never seen. No sockets: a stub DynamoDB client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from payments.aws.card_store import card_to_item
from payments.aws.charge_store import DynamoChargeStore
from payments.aws.dynamo import to_attributes
from payments.cards.model import Card, CardSource, CardStatus
from payments.cards.service import CardService
from payments.charges.model import charge_id_for_key
from payments.charges.ports import CardSnapshot
from payments.errors import CardAccountMismatchError, CardRemovedError, StoreUnavailableError

KEY = "order-42"
CHARGE_ID = charge_id_for_key(KEY)
CARD = "c0000000-0000-4000-8000-000000000001"
AT = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
CARD_PK = {"pk": {"S": f"CARD#{CARD}"}, "sk": {"S": "CARD"}}


def card_item(status: CardStatus, account: str = "customer-42") -> dict[str, Any]:
    card = Card(
        id=CARD,
        account_id=account,
        status=status,
        source=CardSource.SETUP,
        created_at=AT,
        updated_at=AT,
    )
    return to_attributes(card_to_item(card))


class _BatchClient:
    """Answers BatchGetItem from `items` (typed, by pk), leaving `unread` of the keys asked
    unprocessed for its first `stingy` requests; records each request."""

    def __init__(
        self, items: list[dict[str, Any]], unread: tuple[str, ...] = (), stingy: int = 0
    ) -> None:
        self.items = {item["pk"]["S"]: item for item in items}
        self.unread, self.stingy = unread, stingy
        self.requests: list[dict[str, Any]] = []

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.requests.append(kwargs)
        ((table, request),) = kwargs["RequestItems"].items()
        keys = request["Keys"]
        left = [k for k in keys if k["pk"]["S"] in self.unread] if self.stingy else []
        self.stingy = max(0, self.stingy - 1)
        read = [k["pk"]["S"] for k in keys if k not in left]
        found = [self.items[pk] for pk in read if pk in self.items]
        answer: dict[str, Any] = {"Responses": {table: found}}
        if left:
            answer["UnprocessedKeys"] = {table: {**request, "Keys": left}}
        return answer


def test_the_key_and_the_card_are_one_strongly_consistent_batch_get() -> None:
    # Given a removed card of the account, and a key never used
    client = _BatchClient([card_item(CardStatus.REMOVED)])
    # When the key is looked up with the card
    record, card = DynamoChargeStore("t", client).get_idempotency_and_card(KEY, CHARGE_ID, CARD)
    # Then the key is new, and the card is handed back as the rules need it
    assert record is None
    assert card == CardSnapshot(account_id="customer-42", removed=True)
    # And it took one BatchGetItem of the key's charge, its older item and the card, strongly
    # consistent, projecting what the lookup and the rules read
    (request,) = client.requests
    sent = request["RequestItems"]["t"]
    assert [k["pk"]["S"] for k in sent["Keys"]] == [
        f"CHARGE#{CHARGE_ID}",
        f"IDEMPOTENCY#{KEY}",
        f"CARD#{CARD}",
    ]
    assert sent["ConsistentRead"] is True
    assert set(sent["ExpressionAttributeNames"].values()) == {
        "pk",
        "chargeId",
        "requestHash",
        "accountId",
        "status",
    }


def test_a_card_never_seen_is_none_and_a_used_key_still_answers_its_record() -> None:
    # Given the key's charge exists, and no card item
    charge = {"pk": {"S": f"CHARGE#{CHARGE_ID}"}, "requestHash": {"B": bytes(32)}}
    client = _BatchClient([charge])
    # When the key is looked up with the card
    record, card = DynamoChargeStore("t", client).get_idempotency_and_card(KEY, CHARGE_ID, CARD)
    # Then the record names the key's charge (a replay), and no card was found
    assert record is not None
    assert (record.resource_id, record.request_hash) == (CHARGE_ID, "00" * 32)
    assert card is None


def test_a_card_key_left_unprocessed_is_asked_again() -> None:
    # Given DynamoDB leaves the card's key unprocessed once
    client = _BatchClient([card_item(CardStatus.ACTIVE)], unread=(f"CARD#{CARD}",), stingy=1)
    # When the key is looked up with the card
    _record, card = DynamoChargeStore("t", client).get_idempotency_and_card(KEY, CHARGE_ID, CARD)
    # Then the card is read by a second request asking for it alone
    assert card == CardSnapshot(account_id="customer-42", removed=False)
    assert [r["RequestItems"]["t"]["Keys"] for r in client.requests][1] == [CARD_PK]


def test_a_card_key_never_processed_is_unavailable_not_a_card_never_seen() -> None:
    # Given DynamoDB keeps leaving the (removed) card's key unprocessed
    client = _BatchClient([card_item(CardStatus.REMOVED)], unread=(f"CARD#{CARD}",), stingy=99)
    # When the key is looked up with the card / Then it fails as a store outage (503, retry):
    # a removed card must not pass for one never seen
    with pytest.raises(StoreUnavailableError):
        DynamoChargeStore("t", client).get_idempotency_and_card(KEY, CHARGE_ID, CARD)
    assert len(client.requests) == 5


def test_the_rules_on_a_snapshot_are_the_rules_on_a_read() -> None:
    # Given the card service (its store and gateway are not needed to judge a snapshot)
    def unused() -> Any:
        raise AssertionError("a snapshot is judged without a read")

    cards = CardService(cards=unused, gateway=unused)  # type: ignore[arg-type]
    # When a card never seen, or the account's active card, is checked / Then it passes
    cards.check_snapshot("customer-42", None)
    cards.check_snapshot("customer-42", CardSnapshot("customer-42", removed=False))
    # And another account's card is 422 (before being told it is removed), a removed card 409
    with pytest.raises(CardAccountMismatchError, match="saved under another account"):
        cards.check_snapshot("someone-else", CardSnapshot("customer-42", removed=True))
    with pytest.raises(CardRemovedError, match="removed from the account"):
        cards.check_snapshot("customer-42", CardSnapshot("customer-42", removed=True))
