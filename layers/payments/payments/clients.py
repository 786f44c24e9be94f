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

# parameter_validation=False: botocore's client-side check walks every attribute of every
# request (about a tenth of a call's CPU); the requests are built by the layer's code, never
# from raw input, and the service validates them anyway: a malformed one fails as the
# service's ValidationException (a bug, 500) rather than as a ParamValidationError, which the
# store translated as "unreachable" (503). The same locally (DynamoDB Local validates) and in
# AWS (docs/decisions.md, 2026-12-06).
AWS_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"max_attempts": 3, "mode": "standard"},
    parameter_validation=False,
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
