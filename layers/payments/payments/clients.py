"""boto3 clients for the parts bootstrap builds: one session a container, one botocore Config
(imported by bootstrap at every function's import: boto3 and botocore only, no adapter).

boto3's default session is not thread-safe, and a reconciler run builds parts from several
threads: every client comes from one session, made under a lock. `forget` drops the session
(tests change the environment between cases).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

AWS_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"}
)
# Connections kept per client: a reconciler run checks up to 16 charges at once (each with a
# DynamoDB and an ePay connection) while it lists the next page.
POOL_CONNECTIONS = 20
# The renewal dispatcher leases and enqueues from every shard at once (one thread per shard).
DISPATCH_CONNECTIONS = 64

_lock = threading.Lock()


@cache
def _session() -> Any:
    return boto3.session.Session()


def client(service: str, *, connections: int | None = None) -> Any:
    """A new client of `service` on the container's session (`connections`: its pool size)."""
    config = AWS_CONFIG
    if connections is not None:
        config = AWS_CONFIG.merge(Config(max_pool_connections=connections))
    with _lock:
        return _session().client(service, config=config)


def forget() -> None:
    """Drop the session: the next client is made from the environment as it is then."""
    _session.cache_clear()
