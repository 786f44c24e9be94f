"""The outbox's adapter: a DynamoDB stream record of a charge or subscription item -> its change.

The table's stream (NEW_AND_OLD_IMAGES) is the outbox: the conditional write that makes a fact true
is also what records it, so no extra write is needed and no crash between the write and PutEvents
can lose the event. This module only turns the stream's typed images into plain values
(boto3's TypeDeserializer) and a `Charge` (`charge_store.charge_from_item`); which status change
is which event stays in `payments.charges.events`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer

# Each kind's store module (and its domain model) is imported by the function that reads that kind,
# on the first record of it: a batch of charge changes never loads the subscription store.
if TYPE_CHECKING:
    from payments.cards.model import Card
    from payments.charges.model import Charge
    from payments.refunds.model import Refund
    from payments.subscriptions.model import Subscription

CHARGE_SK = "CHARGE"
SUBSCRIPTION_SK = "SUB"
REFUND_SK_PREFIX = "REFUND#"
CARD_SK = "CARD"
_DESERIALIZER = TypeDeserializer()


def _typed(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """One attribute value of a stream image as boto3's deserializer takes it: Lambda delivers
    the record as JSON, so a Binary (B, BS; a charge's digests since issue 16) is base64 text."""
    ((kind, raw),) = value.items()
    if kind == "B" and isinstance(raw, str):
        return {"B": base64.b64decode(raw)}
    if kind == "BS":
        return {"BS": [base64.b64decode(v) if isinstance(v, str) else v for v in raw]}
    if kind == "M":
        return {"M": {k: _typed(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [_typed(v) for v in raw]}
    return value


def _plain(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not image:
        return None
    return {name: _DESERIALIZER.deserialize(_typed(value)) for name, value in image.items()}


@dataclass(frozen=True)
class ChargeChange:
    """One stored write of a charge item: its status before (None: a new item), and after."""

    previous_status: str | None
    charge: Charge


@dataclass(frozen=True)
class SubscriptionChange:
    """One stored write of a subscription item: its status before (None: a new item), and after."""

    previous_status: str | None
    subscription: Subscription


def charge_change_from_stream(change: Mapping[str, Any]) -> ChargeChange | None:
    """The charge change of one stream record's `dynamodb` part (Keys, NewImage, OldImage, ...).

    None for anything that is not a charge item: other items of the table and removals (no
    NewImage).
    """
    images = _images(change, CHARGE_SK, "CHARGE#")
    if images is None:
        return None
    previous, new = images
    from payments.aws.charge_items import charge_from_item

    return ChargeChange(previous, charge_from_item(new))


@dataclass(frozen=True)
class RefundChange:
    """One stored write of a refund item: its status before (None: a new item), and after."""

    previous_status: str | None
    refund: Refund


def refund_change_from_stream(change: Mapping[str, Any]) -> RefundChange | None:
    """The refund change of one stream record's `dynamodb` part; None for other items."""
    new = _plain(change.get("NewImage"))
    if new is None or not str(new.get("sk", "")).startswith(REFUND_SK_PREFIX):
        return None
    images = _images(change, str(new["sk"]), "CHARGE#")
    if images is None:
        return None
    previous, item = images
    from payments.aws.refund_store import refund_from_item

    return RefundChange(previous, refund_from_item(item))


def subscription_change_from_stream(change: Mapping[str, Any]) -> SubscriptionChange | None:
    """The subscription change of one stream record's `dynamodb` part; None for other items."""
    images = _images(change, SUBSCRIPTION_SK, "SUB#")
    if images is None:
        return None
    previous, new = images
    from payments.aws.subscription_store import subscription_from_item

    return SubscriptionChange(previous, subscription_from_item(new))


def _images(
    change: Mapping[str, Any], sk: str, pk_prefix: str
) -> tuple[str | None, dict[str, Any]] | None:
    """(the status before, the new image) of an item of this kind; None for other items."""
    new = _plain(change.get("NewImage"))
    if new is None or new.get("sk") != sk or not str(new.get("pk", "")).startswith(pk_prefix):
        return None
    old = _plain(change.get("OldImage"))
    previous = None if old is None else old.get("status")
    return (None if previous is None else str(previous)), new


@dataclass(frozen=True)
class CardChange:
    """One stored write of a card item: its status before (None: a new item), and after."""

    previous_status: str | None
    card: Card


def card_change_from_stream(change: Mapping[str, Any]) -> CardChange | None:
    """The card change of one stream record's `dynamodb` part; None for other items."""
    images = _images(change, CARD_SK, "CARD#")
    if images is None:
        return None
    previous, new = images
    from payments.aws.card_store import card_from_item

    return CardChange(previous, card_from_item(new))
