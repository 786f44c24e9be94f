"""TODO docstring for aws.dynamo."""

from __future__ import annotations

from collections.abc import Mapping
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
_VERSIONED_ITEMS = frozenset({"charge", "subscription"})


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
