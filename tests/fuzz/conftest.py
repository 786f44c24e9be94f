"""Fuzz tier: generated requests to every API route, through the real handlers, against the
integration tier's stack (DynamoDB Local, moto's server, the ePay simulator on loopback; its
fixtures are imported, not copied), with every API function's environment from template.yaml."""

from __future__ import annotations

import os

import boto3
import pytest

from local.run import merged_environment
from local.template import load_template, parameter_defaults
from payments import bootstrap
from tests.fuzz.harness import Api, plant_seeds
from tests.fuzz.strategies import TEMPLATE_PATH, Seeds
from tests.integration.conftest import (
    Stack,
    dynamodb_endpoint,
    moto_endpoint,
    simulator,
    stack,
)

__all__ = ["dynamodb_endpoint", "moto_endpoint", "simulator", "stack"]  # the fixtures


@pytest.fixture
def fuzz_api(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, dynamodb_endpoint: str, moto_endpoint: str
) -> Api:
    """The stack with what the integration fixture leaves out (the event bus, the renewal queue,
    the functions' own variables) from template.yaml, and an Api observing its table."""
    template = load_template(TEMPLATE_PATH)
    names = stack.resource_names or {}
    parameters = {**parameter_defaults(template), "PublicBaseUrl": os.environ["PUBLIC_BASE_URL"]}
    for name, value in merged_environment(template, parameters, names).items():
        if name not in os.environ:  # the stack's own settings (endpoints, ePay, table) win
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODBSTREAMS", dynamodb_endpoint)
    monkeypatch.setenv("ALLOW_LOOPBACK_ACS", "true")
    # The simulator's own postLinks would land during later requests and be counted against
    # them; the postLink routes get generated notifications instead.
    monkeypatch.setattr(stack.simulator, "postlink_drop", True)
    bootstrap.reset()
    streams = boto3.client("dynamodbstreams", endpoint_url=dynamodb_endpoint)
    return Api(stack.dynamodb, streams, stack.table, stack.simulator)


@pytest.fixture
def seeds(fuzz_api: Api) -> Seeds:
    """Real resources the generated requests can name."""
    return plant_seeds(fuzz_api)
