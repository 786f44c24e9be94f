"""Create once per idempotency key: shared by every resource a merchant creates (charges,
subscriptions).

The key's record is written in the same transaction as the resource it created, or is the
resource itself (a charge's id derives from its key), so a key either names a resource or
nothing. A repeat with the same request replays that resource; with another request body it is
refused; while the first is still being created it is "in flight".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from payments.errors import IdempotencyInFlightError, IdempotencyMismatchError


@dataclass(frozen=True)
class IdempotencyRecord:
    """Which resource an idempotency key created, and the fingerprint of that request."""

    key: str
    resource_id: str
    request_hash: str


def fingerprint(fields: Mapping[str, str]) -> str:
    """A stable digest of a validated request's fields, to tell a replay from a reused key."""
    canonical = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Once[T]:
    """What a create-once call produced, and whether it was a replay of an earlier request."""

    value: T
    replayed: bool


def create_once[T](
    key: str,
    request_hash: str,
    *,
    lookup: Callable[[str], IdempotencyRecord | None],
    create: Callable[[], T | None],
    replay: Callable[[IdempotencyRecord], T],
) -> Once[T]:
    """Create with `create` unless `key` was used before; then `replay` what it created.

    `create` returns None when a concurrent request took the key between the lookup and the
    write; that request's record is then replayed like any earlier one.
    """
    record = lookup(key)
    if record is None:
        created = create()
        if created is not None:
            return Once(created, replayed=False)
        record = lookup(key)
        if record is None:  # the key's record vanished (TTL) between two reads
            raise IdempotencyInFlightError("the request is being processed, retry later")
    if record.request_hash != request_hash:
        raise IdempotencyMismatchError(
            "this Idempotency-Key was used with a different request body"
        )
    return Once(replay(record), replayed=True)
