"""The only place that wires concrete parts: built lazily, once per container."""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from payments.config import SECRET_MAX_AGE_SECONDS, Settings, load_settings, parse_credentials
from payments.epay import EpayClient, EpayCredentials, Timeouts
from payments.observability import PowertoolsTelemetry
from payments.reconcile import Reconciler
from payments.service import ChargeService
from payments.store import ChargeStore

_lock = threading.RLock()
AWS_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"}
)


@cache
def settings() -> Settings:
    """Settings validated from the environment, once."""
    return load_settings(os.environ)


@cache
def _session() -> Any:
    return boto3.session.Session()


@cache
def _secrets() -> SecretsProvider:
    with _lock:
        client = _session().client("secretsmanager", config=AWS_CONFIG)
    return SecretsProvider(boto3_client=client)


def credentials() -> EpayCredentials:
    """ePay credentials from Secrets Manager, cached for a few minutes per container."""
    secret = _secrets().get(settings().secret_id, max_age=SECRET_MAX_AGE_SECONDS, transform="json")
    return EpayCredentials(*parse_credentials(secret))


@cache
def gateway() -> EpayClient:
    """The ePay client."""
    config = settings()
    return EpayClient(
        oauth_url=config.oauth_url,
        api_url=config.api_url,
        credentials=credentials,
        scope=config.scope,
        timeouts=Timeouts(connect=config.connect_timeout, read=config.read_timeout),
    )


@cache
def store() -> ChargeStore:
    """The DynamoDB charge store."""
    with _lock:
        client = _session().client("dynamodb", config=AWS_CONFIG)
    return ChargeStore(settings().table_name, client)


@cache
def charge_service() -> ChargeService:
    """The charge use cases, wired to the real adapters."""
    with _lock:
        return ChargeService(
            store=store(),
            gateway=gateway(),
            telemetry=PowertoolsTelemetry(),
            public_base_url=settings().public_base_url,
        )


@cache
def reconciler() -> Reconciler:
    """The reconciler, over the same charge service and store."""
    return Reconciler(charges=charge_service(), store=store())


def reset() -> None:
    """Forget everything built (tests change the environment between cases)."""
    for built in (settings, _session, _secrets, gateway, store, charge_service, reconciler):
        built.cache_clear()
