"""DynamoDB plumbing shared by every store: attribute conversion and one error translation.

Every call to DynamoDB goes through `DynamoCalls`, so botocore's errors become ours in one place
(`translate`): a failed condition is StaleStateError (or DuplicateKeyError for a guard item of a
transaction), throttling and outages are StoreUnavailableError.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from payments.errors import (
    DuplicateKeyError,
    PaymentsError,
    StaleStateError,
    StoreUnavailableError,
)

#: The first pause before asking again for a batch read's unprocessed keys; it doubles each round.
BATCH_PAUSE_SECONDS = 0.025
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()
_UNAVAILABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)


def to_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values to DynamoDB attribute values (None values left out)."""
    return {k: _SERIALIZER.serialize(v) for k, v in item.items() if v is not None}


def from_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values to plain Python values (numbers as Decimal)."""
    return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _put_new(table: str, item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": to_attributes(item),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


# Items written conditionally on the version read: a failed condition means "changed meanwhile",
# not "already taken".
_VERSIONED_ITEMS = frozenset({"charge", "subscription", "refund", "setup"})


def translate(exc: Exception, names: list[str] | None = None) -> PaymentsError:
    """Turn a botocore error into one of ours; `names` labels the items of a transaction."""
    if isinstance(exc, BotoCoreError):
        return StoreUnavailableError(f"DynamoDB unreachable ({type(exc).__name__})")
    if not isinstance(exc, ClientError):
        return PaymentsError(f"unexpected store error ({type(exc).__name__})")
    code = exc.response.get("Error", {}).get("Code", "")
    if code == "ConditionalCheckFailedException":
        return StaleStateError("the item changed since it was read")
    if code == "TransactionConflictException":
        return StaleStateError("a concurrent transaction is changing the item")
    if code == "TransactionCanceledException":
        reasons = exc.response.get("CancellationReasons") or []
        for index, reason in enumerate(reasons):
            if reason.get("Code") == "ConditionalCheckFailed":
                which = names[index] if names and index < len(names) else "item"
                if which in _VERSIONED_ITEMS:
                    return StaleStateError(f"the {which} changed since it was read")
                return DuplicateKeyError(f"{which} already taken", which)
        if any(r.get("Code") == "TransactionConflict" for r in reasons):
            return StaleStateError("a concurrent transaction touched the same items")
        if any(r.get("Code") in _UNAVAILABLE for r in reasons):
            return StoreUnavailableError("DynamoDB throttled the transaction")
        return StaleStateError("the transaction was cancelled")
    if code in _UNAVAILABLE:
        return StoreUnavailableError(f"DynamoDB unavailable ({code})")
    return PaymentsError(f"DynamoDB refused the request ({code})")


class DynamoCalls:
    """A boto3 DynamoDB client whose every call raises only our errors. `jitter` and `sleep`
    pace the rounds of a batch read (injectable, so tests run without waiting)."""

    def __init__(
        self,
        client: Any,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._jitter = jitter
        self._sleep = sleep

    def call(self, method: str, names: list[str] | None = None, **kwargs: Any) -> Any:
        """Call `method`; `names` labels the items of a transaction for its errors."""
        try:
            return getattr(self._client, method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, names) from exc

    def call_if(self, method: str, **kwargs: Any) -> Any | None:
        """Call a conditional `method`; None when its condition failed."""
        try:
            return self.call(method, **kwargs)
        except StaleStateError:
            return None

    def get(self, table: str, pk: str, sk: str) -> dict[str, Any] | None:
        """One item by its keys, strongly consistent, as plain values; None when absent."""
        answer = self.call(
            "get_item",
            TableName=table,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return from_attributes(item) if item else None

    def batch_get(
        self,
        table: str,
        keys: list[dict[str, Any]],
        rounds: int = 5,
        names: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The items of `keys` (typed keys, at most 100), strongly consistent, as plain values
        (only the attributes `names` maps, when given); unprocessed keys are asked again after a
        jittered pause that doubles each round (DynamoDB leaves keys unprocessed when it
        throttles: asking again at once meets the same limit), at most `rounds` times in all.
        Keys still unread then raise StoreUnavailableError: a missed item must never pass for an
        absent one (a new Idempotency-Key, a card never seen, a listing without it)."""
        request: dict[str, Any] = {"ConsistentRead": True}
        if names:
            request["ProjectionExpression"] = ", ".join(names)
            request["ExpressionAttributeNames"] = dict(names)
        found: list[dict[str, Any]] = []
        for round_ in range(rounds):
            if not keys:
                break
            if round_:
                self._sleep(BATCH_PAUSE_SECONDS * 2 ** (round_ - 1) * (0.5 + self._jitter() / 2))
            answer = self.call("batch_get_item", RequestItems={table: {"Keys": keys, **request}})
            found += [from_attributes(raw) for raw in answer.get("Responses", {}).get(table, [])]
            keys = answer.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
        if keys:
            raise StoreUnavailableError(f"DynamoDB left {len(keys)} keys of a batch read unread")
        return found

    def write(self, items: list[dict[str, Any]], names: list[str]) -> None:
        """Write `items` atomically (TransactWriteItems); a single Put is written alone, which is
        just as atomic at half the write cost."""
        if len(items) == 1 and "Put" in items[0]:
            self.call("put_item", names, **items[0]["Put"])
        else:
            self.call("transact_write_items", names, TransactItems=items)

    def put_in_order(self, puts: list[dict[str, Any]], names: list[str]) -> None:
        """Write conditional Puts one after another, the record they guard last: the first whose
        condition fails stops the rest (DuplicateKeyError naming it). Half a transaction's write
        cost; a stop or a crash leaves the earlier ones behind, so they must be reservations that
        are harmless alone (decisions 2026-12-06).

        A put whose condition fails on an item equal to the one it writes is done, not taken:
        botocore sent it again after a first try that succeeded but whose answer was lost. The
        items hold what makes them this request's own (the charge its random secret's digest)."""
        for put, name in zip(puts, names, strict=True):
            request = {**put["Put"], "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
            try:
                self._client.put_item(**request)
            except ClientError as exc:
                error = translate(exc)
                if not isinstance(error, StaleStateError):
                    raise error from exc
                held = exc.response.get("Item")
                if held is not None and from_attributes(held) == from_attributes(request["Item"]):
                    continue
                raise DuplicateKeyError(f"{name} already taken", name) from exc
            except BotoCoreError as exc:
                raise translate(exc) from exc


def due_keys(
    db: DynamoCalls, table: str, shard: str, now: str, limit: int
) -> list[tuple[str, str]]:
    """(pk, sk) of the items of one DueIndex shard whose `nextCheckAt` (ISO) is at or before
    `now`, oldest first. The index is eventually consistent: re-read before acting."""
    answer = db.call(
        "query",
        TableName=table,
        IndexName="DueIndex",
        KeyConditionExpression="dueShard = :shard AND nextCheckAt <= :now",
        ExpressionAttributeValues={":shard": {"S": shard}, ":now": {"S": now}},
        Limit=limit,
    )
    return [(item["pk"]["S"], item["sk"]["S"]) for item in answer.get("Items", [])]
