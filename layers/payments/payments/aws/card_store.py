"""DynamoDB access for saved cards and card setups, in the payments table.

Items (pk / sk):
  SETUP#<id>          / SETUP      a card setup, with `version`; while PENDING also `dueShard` =
                                   SDUE#<n> and `nextCheckAt` (DueIndex)
  SETUPKEY#<key>      / SETUPKEY   the setup an Idempotency-Key created (TTL)
  INVOICE#<invoiceId> / INVOICE    the invoice guard, as for charges: `setupId`, and `chargeId`
                                   once a paying setup's charge exists, with the charge's
                                   write-once facts (charge_items.invoice_facts), as for charges
  INVOICE_SUFFIX#<terminal>#<last6> the suffix guard, as for charges
  CARD#<cardId>       / CARD       a saved card, with `version`; `cardAccount` and `cardSort`
                                   (created time, id) key the sparse AccountCardsIndex
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from payments.aws.charge_items import invoice_facts, invoice_listing, new_charge_item
from payments.aws.dynamo import (
    DynamoCalls,
    _epoch,
    _put_new,
    due_keys,
    from_attributes,
    to_attributes,
)
from payments.aws.invoice_space import suffix_guard
from payments.cards.model import (
    SETUP_DUE_SHARDS,
    Card,
    CardSetup,
    CardSource,
    CardStatus,
    SetupError,
    SetupMode,
    SetupStatus,
)
from payments.charges.model import Charge, HistoryEntry
from payments.charges.ports import CardSnapshot
from payments.shared.clock import from_iso, from_iso_or_none, iso
from payments.shared.idempotency import IdempotencyRecord

ACCOUNT_CARDS_INDEX = "AccountCardsIndex"


def _opt_iso(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None


def setup_to_item(setup: CardSetup) -> dict[str, Any]:
    """The DynamoDB attributes (plain values) of a setup."""
    due = setup.next_check_at is not None and setup.open
    shard = hashlib.sha256(setup.id.encode()).digest()[0] % SETUP_DUE_SHARDS
    return {
        "pk": f"SETUP#{setup.id}",
        "sk": "SETUP",
        "id": setup.id,
        "accountId": setup.account_id,
        "mode": setup.mode.value,
        "amount": setup.amount,
        "currency": setup.currency,
        "invoiceId": setup.invoice_id,
        "terminalId": setup.terminal_id,
        "status": setup.status.value,
        "version": setup.version,
        "backLink": setup.back_link,
        "failureBackLink": setup.failure_back_link,
        "language": setup.language,
        "description": setup.description,
        "idempotencyKey": setup.idempotency_key,
        "requestHash": setup.request_hash,
        "secretHashDigest": setup.secret_hash_digest,
        "pageNonce": setup.page_nonce,
        "pageTokenDigest": setup.page_token_digest,
        "createdAt": iso(setup.created_at),
        "updatedAt": iso(setup.updated_at),
        "expiresAt": iso(setup.expires_at),
        "pageServedAt": _opt_iso(setup.page_served_at),
        "checkAttempts": setup.check_attempts,
        "cardId": setup.card_id,
        "cardMask": setup.card_mask,
        "chargeId": setup.charge_id,
        "transactionId": setup.transaction_id,
        "error": None
        if setup.error is None
        else {"code": setup.error.code, "message": setup.error.message},
        "dueShard": f"SDUE#{shard}" if due else None,
        "nextCheckAt": _opt_iso(setup.next_check_at) if due else None,
    }


def setup_from_item(item: Mapping[str, Any]) -> CardSetup:
    """Rebuild a setup from its attributes (plain values)."""
    error = item.get("error")
    return CardSetup(
        id=str(item["id"]),
        account_id=str(item["accountId"]),
        mode=SetupMode(item["mode"]),
        amount=Decimal(item["amount"]),
        currency=str(item["currency"]),
        invoice_id=str(item["invoiceId"]),
        terminal_id=str(item.get("terminalId") or ""),
        status=SetupStatus(item["status"]),
        version=int(item["version"]),
        back_link=str(item["backLink"]),
        failure_back_link=item.get("failureBackLink"),
        language=str(item["language"]),
        description=str(item["description"]),
        idempotency_key=str(item["idempotencyKey"]),
        request_hash=str(item["requestHash"]),
        secret_hash_digest=str(item["secretHashDigest"]),
        page_nonce=str(item["pageNonce"]),
        page_token_digest=str(item["pageTokenDigest"]),
        created_at=from_iso(item["createdAt"]),
        updated_at=from_iso(item["updatedAt"]),
        expires_at=from_iso(item["expiresAt"]),
        page_served_at=from_iso_or_none(item.get("pageServedAt")),
        next_check_at=from_iso_or_none(item.get("nextCheckAt")),
        check_attempts=int(item.get("checkAttempts", 0)),
        card_id=item.get("cardId"),
        card_mask=item.get("cardMask"),
        charge_id=item.get("chargeId"),
        transaction_id=item.get("transactionId"),
        error=None if not error else SetupError(str(error["code"]), str(error["message"])),
    )


def card_to_item(card: Card) -> dict[str, Any]:
    """The DynamoDB attributes (plain values) of a card."""
    return {
        "pk": f"CARD#{card.id}",
        "sk": "CARD",
        "id": card.id,
        "accountId": card.account_id,
        "status": card.status.value,
        "source": card.source.value,
        "version": card.version,
        "createdAt": iso(card.created_at),
        "updatedAt": iso(card.updated_at),
        "mask": card.mask,
        "cardType": card.card_type,
        "issuer": card.issuer,
        "setupId": card.setup_id,
        "removedAt": _opt_iso(card.removed_at),
        "paymentAvailable": card.payment_available,
        "listedAtEpay": card.listed_at_epay,
        "removalClaimedAt": _opt_iso(card.removal_claimed_at),
        "cardAccount": card.account_id,
        "cardSort": f"{iso(card.created_at)}#{card.id}",
    }


def card_from_item(item: Mapping[str, Any]) -> Card:
    """Rebuild a card from its attributes (plain values)."""
    return Card(
        id=str(item["id"]),
        account_id=str(item["accountId"]),
        status=CardStatus(item["status"]),
        source=CardSource(item["source"]),
        version=int(item["version"]),
        created_at=from_iso(item["createdAt"]),
        updated_at=from_iso(item["updatedAt"]),
        mask=item.get("mask"),
        card_type=item.get("cardType"),
        issuer=item.get("issuer"),
        setup_id=item.get("setupId"),
        removed_at=from_iso_or_none(item.get("removedAt")),
        payment_available=item.get("paymentAvailable"),
        listed_at_epay=item.get("listedAtEpay"),
        removal_claimed_at=from_iso_or_none(item.get("removalClaimedAt")),
    )


def card_key(card_id: str) -> dict[str, Any]:
    """The key (typed attribute values) of a saved card's item."""
    return {"pk": {"S": f"CARD#{card_id}"}, "sk": {"S": "CARD"}}


def card_snapshot(item: Mapping[str, Any]) -> CardSnapshot:
    """What the card rules need of a card's item (plain values; `accountId` and `status` are
    enough, so a read may project the rest away)."""
    removed = CardStatus(item["status"]) is CardStatus.REMOVED
    return CardSnapshot(account_id=str(item["accountId"]), removed=removed)


def _versioned_put(table: str, item: dict[str, Any], version: int) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table,
            "Item": to_attributes(item),
            "ConditionExpression": "#v = :version",
            "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":version": {"N": str(version)}},
        }
    }


def _invoice_names_charge(table: str, setup: CardSetup, charge: Charge) -> dict[str, Any]:
    """The update of a paying setup's INVOICE item once its charge exists: naming the charge,
    listing it under its account, and keeping the charge's write-once facts (payer, key) as a
    charge's own invoice does (charge_items.invoice_facts)."""
    values: dict[str, str] = {":charge": charge.id, ":setup": setup.id}
    sets = ["chargeId = :charge"]
    names: dict[str, str] = {}
    facts = {**invoice_listing(charge), **invoice_facts(charge)}
    for n, (name, value) in enumerate(facts.items()):  # `name` is a reserved word
        names[f"#f{n}"], values[f":f{n}"] = name, value
        sets.append(f"#f{n} = :f{n}")
    return {
        "TableName": table,
        "Key": {"pk": {"S": f"INVOICE#{setup.invoice_id}"}, "sk": {"S": "INVOICE"}},
        "UpdateExpression": "SET " + ", ".join(sets),
        "ConditionExpression": "setupId = :setup AND attribute_not_exists(chargeId)",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": to_attributes(values),
    }


class DynamoSetupStore:
    """Card setups and their guards."""

    def __init__(
        self,
        table_name: str,
        client: Any,
        *,
        clock: Callable[[], datetime] | None = None,
        idempotency_ttl: timedelta = timedelta(days=30),
        invoice_suffix_ttl: timedelta = timedelta(days=400),
    ) -> None:
        self._table = table_name
        self._db = DynamoCalls(client)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._idempotency_ttl = idempotency_ttl
        self._suffix_ttl = invoice_suffix_ttl

    def create(self, setup: CardSetup) -> None:
        """The setup, its idempotency key, its invoice id and suffix, in one transaction."""
        now = self._clock()
        items = [
            _put_new(self._table, setup_to_item(setup)),
            _put_new(
                self._table,
                {
                    "pk": f"SETUPKEY#{setup.idempotency_key}",
                    "sk": "SETUPKEY",
                    "setupId": setup.id,
                    "requestHash": setup.request_hash,
                    "expiresAt": _epoch(now + self._idempotency_ttl),
                },
            ),
            _put_new(
                self._table,
                {"pk": f"INVOICE#{setup.invoice_id}", "sk": "INVOICE", "setupId": setup.id},
            ),
            suffix_guard(
                self._table,
                setup.terminal_id,
                setup.invoice_id,
                {"setupId": setup.id},
                now + self._suffix_ttl,
                now,
            ),
        ]
        self._db.write(items, ["setup", "idempotency", "invoice", "invoice_suffix"])

    def get(self, setup_id: str) -> CardSetup | None:
        """Read a setup (strongly consistent), or None."""
        item = self._db.get(self._table, f"SETUP#{setup_id}", "SETUP")
        return setup_from_item(item) if item else None

    def get_by_invoice(self, invoice_id: str) -> CardSetup | None:
        """The setup an invoice id belongs to, or None (a charge's invoice, or none)."""
        item = self._db.get(self._table, f"INVOICE#{invoice_id}", "INVOICE")
        if not item or not item.get("setupId"):
            return None
        return self.get(str(item["setupId"]))

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        """What a setup idempotency key created, or None."""
        item = self._db.get(self._table, f"SETUPKEY#{key}", "SETUPKEY")
        if item is None:
            return None
        return IdempotencyRecord(key, str(item["setupId"]), str(item["requestHash"]))

    def save(self, current: CardSetup, updated: CardSetup) -> CardSetup:
        """Replace the setup if its version is still the one read (StaleStateError)."""
        stored = replace(updated, version=current.version + 1)
        self._db.write(
            [_versioned_put(self._table, setup_to_item(stored), current.version)], ["setup"]
        )
        return stored

    def complete(
        self,
        current: CardSetup,
        updated: CardSetup,
        card: Card | None,
        charge: tuple[Charge, HistoryEntry] | None,
    ) -> CardSetup:
        """The setup's end, its card and its charge in one transaction (see SetupStore)."""
        stored = replace(updated, version=current.version + 1)
        items = [_versioned_put(self._table, setup_to_item(stored), current.version)]
        names = ["setup"]
        if card is not None:
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": to_attributes(card_to_item(card)),
                        # A card saved again under the same account is saved anew.
                        "ConditionExpression": "attribute_not_exists(pk) OR accountId = :account",
                        "ExpressionAttributeValues": {":account": {"S": card.account_id}},
                    }
                }
            )
            names.append("card")
        if charge is not None:
            new_charge, entry = charge
            items += [
                _put_new(self._table, new_charge_item(new_charge, entry)),
                {"Update": _invoice_names_charge(self._table, current, new_charge)},
            ]
            names += ["charge", "invoice"]
        self._db.write(items, names)
        return stored

    def due_setup_ids(self, shard: int, now: datetime, limit: int) -> list[str]:
        """Ids of setups due for a check in one shard, oldest first (eventually consistent)."""
        keys = due_keys(self._db, self._table, f"SDUE#{shard}", iso(now), limit)
        return [pk.removeprefix("SETUP#") for pk, _ in keys]


class DynamoCardStore:
    """Saved cards, listed per account through the sparse AccountCardsIndex."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._db = DynamoCalls(client)

    def get(self, card_id: str) -> Card | None:
        """Read a card (strongly consistent), or None."""
        key = card_key(card_id)
        item = self._db.get(self._table, key["pk"]["S"], key["sk"]["S"])
        return card_from_item(item) if item else None

    def add(self, card: Card) -> bool:
        """Write a card unless its id is taken; False when it was."""
        put = _put_new(self._table, card_to_item(card))["Put"]
        return self._db.call_if("put_item", **put) is not None

    def save(self, current: Card, updated: Card) -> Card:
        """Replace the card if its version is still the one read (StaleStateError)."""
        stored = replace(updated, version=current.version + 1)
        self._db.write(
            [_versioned_put(self._table, card_to_item(stored), current.version)], ["card"]
        )
        return stored

    def list_by_account(
        self, account_id: str, limit: int, cursor: dict[str, str] | None
    ) -> tuple[list[Card], dict[str, str] | None]:
        """One Query of AccountCardsIndex: a page of the account's cards, newest first."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": ACCOUNT_CARDS_INDEX,
            "KeyConditionExpression": "cardAccount = :account",
            "ExpressionAttributeValues": {":account": {"S": account_id}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            request["ExclusiveStartKey"] = {k: {"S": v} for k, v in cursor.items()}
        answer = self._db.call("query", **request)
        cards = [card_from_item(from_attributes(raw)) for raw in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return cards, ({k: v["S"] for k, v in last.items()} if last else None)
