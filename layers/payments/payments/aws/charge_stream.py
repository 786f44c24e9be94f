"""The charge outbox's adapter: a DynamoDB stream record of a charge item -> its charge.* event.

The table's stream (NEW_AND_OLD_IMAGES) is the outbox: the conditional write that makes a fact true
is also what records it, so no extra write is needed and no crash between the write and PutEvents
can lose the event. This module only turns the stream's typed images into plain values
(boto3's TypeDeserializer) and a `Charge` (`charge_store.charge_from_item`); which status change
is which event stays in `payments.charges.events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from payments.aws.charge_store import charge_from_item
from payments.charges.model import Charge

CHARGE_SK = "CHARGE"
_DESERIALIZER = TypeDeserializer()


def _plain(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not image:
        return None
    return {name: _DESERIALIZER.deserialize(value) for name, value in image.items()}


@dataclass(frozen=True)
class ChargeChange:
    """One stored write of a charge item: its status before (None: a new item), and after."""

    previous_status: str | None
    charge: Charge


def charge_change_from_stream(change: Mapping[str, Any]) -> ChargeChange | None:
    """The charge change of one stream record's `dynamodb` part (Keys, NewImage, OldImage, ...).

    None for anything that is not a charge item: other items of the table and removals (no
    NewImage).
    """
    new = _plain(change.get("NewImage"))
    if (
        new is None
        or new.get("sk") != CHARGE_SK
        or not str(new.get("pk", "")).startswith("CHARGE#")
    ):
        return None
    old = _plain(change.get("OldImage"))
    previous = None if old is None else old.get("status")
    return ChargeChange(None if previous is None else str(previous), charge_from_item(new))
