"""TODO docstring for shared.idempotency."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IdempotencyRecord:
    """Which charge an idempotency key created, and the fingerprint of that request."""

    key: str
    charge_id: str
    request_hash: str
