"""A batch read's unprocessed keys (DynamoDB leaves them when it throttles) are asked again after
a jittered pause that doubles each round, and never pass for absent items when they stay unread.

A real botocore client answers through botocore's Stubber: the requests are checked against
DynamoDB's model and the answers parsed by botocore, with no socket opened."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from payments.aws.dynamo import BATCH_PAUSE_SECONDS, DynamoCalls
from payments.errors import StoreUnavailableError

TABLE = "payments"


def key(n: int) -> dict[str, Any]:
    return {"pk": {"S": f"CHARGE#{n}"}, "sk": {"S": "CHARGE"}}


def item(n: int) -> dict[str, Any]:
    return {**key(n), "amount": {"N": "1500.00"}}


def request(keys: list[dict[str, Any]]) -> dict[str, Any]:
    return {"RequestItems": {TABLE: {"Keys": keys, "ConsistentRead": True}}}


def answer(found: list[int], unprocessed: list[int]) -> dict[str, Any]:
    left = {TABLE: {"Keys": [key(n) for n in unprocessed]}} if unprocessed else {}
    return {"Responses": {TABLE: [item(n) for n in found]}, "UnprocessedKeys": left}


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).client("dynamodb")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_unprocessed_keys_are_asked_again_after_growing_jittered_pauses(
    stubbed: tuple[Any, Stubber],
) -> None:
    # Given DynamoDB that processes one key per round of three
    client, stubber = stubbed
    stubber.add_response("batch_get_item", answer([1], [2, 3]), request([key(1), key(2), key(3)]))
    stubber.add_response("batch_get_item", answer([2], [3]), request([key(2), key(3)]))
    stubber.add_response("batch_get_item", answer([3], []), request([key(3)]))
    pauses: list[float] = []
    calls = DynamoCalls(client, jitter=lambda: 1.0, sleep=pauses.append)

    # When the three are read
    found = calls.batch_get(TABLE, [key(1), key(2), key(3)])

    # Then every item comes back, after a pause before each round but the first, doubling
    assert sorted(f["pk"] for f in found) == ["CHARGE#1", "CHARGE#2", "CHARGE#3"]
    assert pauses == [BATCH_PAUSE_SECONDS, 2 * BATCH_PAUSE_SECONDS]


def test_the_pause_is_jittered_within_half_of_its_ceiling(stubbed: tuple[Any, Stubber]) -> None:
    # Given a round that leaves a key unprocessed, and a jitter at its lowest
    client, stubber = stubbed
    stubber.add_response("batch_get_item", answer([], [1]), request([key(1)]))
    stubber.add_response("batch_get_item", answer([1], []), request([key(1)]))
    pauses: list[float] = []
    calls = DynamoCalls(client, jitter=lambda: 0.0, sleep=pauses.append)

    # When the key is read
    calls.batch_get(TABLE, [key(1)])

    # Then the one pause is half the first ceiling
    assert pauses == [BATCH_PAUSE_SECONDS / 2]


def test_keys_still_unread_after_the_last_round_raise_instead_of_reading_as_absent(
    stubbed: tuple[Any, Stubber],
) -> None:
    # Given DynamoDB that throttles one key in every round
    client, stubber = stubbed
    stubber.add_response("batch_get_item", answer([1], [2]), request([key(1), key(2)]))
    for _ in range(2):
        stubber.add_response("batch_get_item", answer([], [2]), request([key(2)]))
    pauses: list[float] = []
    calls = DynamoCalls(client, jitter=lambda: 1.0, sleep=pauses.append)

    # When the two are read in at most three rounds
    # Then the read fails as the store being unavailable, naming what was left
    with pytest.raises(StoreUnavailableError, match="1 keys"):
        calls.batch_get(TABLE, [key(1), key(2)], rounds=3)
    # And it paused before each retried round, and not after the last one
    assert pauses == [BATCH_PAUSE_SECONDS, 2 * BATCH_PAUSE_SECONDS]


def test_a_batch_read_answered_whole_never_pauses(stubbed: tuple[Any, Stubber]) -> None:
    # Given DynamoDB that answers every key at once
    client, stubber = stubbed
    stubber.add_response("batch_get_item", answer([1, 2], []), request([key(1), key(2)]))
    pauses: list[float] = []

    # When the two are read
    found = DynamoCalls(client, sleep=pauses.append).batch_get(TABLE, [key(1), key(2)])

    # Then one request did it, with no pause
    assert len(found) == 2
    assert pauses == []
