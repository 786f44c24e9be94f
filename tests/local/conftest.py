"""Fixtures for the tests of the local stack (local/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local.apigw.server import LocalApiGateway
from local.template import load_template

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_TEMPLATE = FIXTURES / "template.yaml"

FIXTURE_ENV = {
    "GREETING": "hi-from-test",
    "TABLE_NAME": "echo-table",
    "SECRET_ID": "echo-secret",
    "LABEL": "hi-from-test-us-east-1",
    "OVERRIDDEN": "own",
}


@pytest.fixture(scope="session")
def fixture_template() -> dict[str, Any]:
    return load_template(FIXTURE_TEMPLATE)


@pytest.fixture(scope="module")
def gateway() -> Iterator[LocalApiGateway]:
    """The fixture template served on a free loopback port, with a short integration timeout."""
    api = LocalApiGateway(FIXTURE_TEMPLATE, FIXTURE_ENV, port=0, integration_timeout=1.5)
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(scope="module")
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=10), retries=False)
    try:
        yield pool
    finally:
        pool.clear()
