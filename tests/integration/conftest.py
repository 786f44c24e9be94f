"""Integration tier: handlers in-process on real API Gateway events, DynamoDB Local, moto's
server for Secrets Manager, and the ePay simulator on loopback. Each test gets its own table and
secret, so tests never see each other's data.

Every answer a handler gives here (through `Stack.invoke`, or a handler of `load_function` called
directly) is checked against openapi.yaml (tests/integration/openapi_check.py): a response the
document does not allow fails the test that saw it.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import pytest
from botocore.client import BaseClient
from moto.server import ThreadedMotoServer

from local.apigw import LambdaContext
from local.aws import create_resources
from local.dynamodb_local import DynamoDBLocal, free_port
from local.epay_sim import EpaySimulator
from local.template import load_template
from payments import bootstrap
from payments.observability import logger
from tests.integration import iam_check, openapi_check

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
PUBLIC_BASE_URL = "http://127.0.0.1:3000"


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    server = DynamoDBLocal().start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def simulator() -> Iterator[EpaySimulator]:
    sim = EpaySimulator(host="127.0.0.1", port=0).start()
    yield sim
    sim.stop()


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py afresh (a new container each call; every function has an
    app.py, so the module gets a unique name)."""
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"function_{name}_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = getattr(module, "lambda_handler", None)
    if callable(handler):
        module.lambda_handler = contract_checked(iam_check.checked(handler, name))
    return module


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def contract_checked(handler: Handler) -> Handler:
    """`handler`, with each API Gateway answer it gives checked against openapi.yaml."""
    if getattr(handler, "contract_checked", False):
        return handler

    @functools.wraps(handler)
    def checked(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result = handler(event, context)
        if isinstance(event, dict) and isinstance(result, dict):
            openapi_check.check_exchange(event, result)
        return result

    checked.contract_checked = True  # type: ignore[attr-defined]
    return checked


@pytest.fixture(autouse=True)
def _calls_are_allowed_by_the_template() -> Iterator[None]:
    """Fail a test whose handlers made a DynamoDB request their IAM statements in
    template.yaml would refuse (tests/integration/iam_check.py)."""
    iam_check.VIOLATIONS.clear()
    yield
    found, iam_check.VIOLATIONS[:] = sorted(set(iam_check.VIOLATIONS)), []
    if found:
        pytest.fail("IAM would refuse:\n" + "\n".join(found), pytrace=False)


@pytest.fixture(autouse=True)
def _responses_match_the_contract() -> Iterator[None]:
    """Fail a test whose handlers answered, in another thread, anything openapi.yaml does not
    allow (there the violation may have been raised and swallowed)."""
    openapi_check.VIOLATIONS.clear()
    yield
    found, openapi_check.VIOLATIONS[:] = list(openapi_check.VIOLATIONS), []
    if found:
        pytest.fail("\n\n".join(found), pytrace=False)


class Context(LambdaContext):
    """A Lambda context for the charges function with `timeout_seconds` left."""

    def __init__(self, timeout_seconds: float = 28.0) -> None:
        super().__init__(
            function_name="charges", memory_limit_in_mb=256, timeout_seconds=timeout_seconds
        )


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    raw: str


@dataclass
class Stack:
    table: str
    dynamodb: Any
    simulator: EpaySimulator
    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    resource_names: dict[str, str] | None = None

    def invoke(self, event: dict[str, Any]) -> Answer:
        """Call the handler with an API Gateway event; its answer must match openapi.yaml."""
        result = contract_checked(self.handler)(event, Context())
        raw = result.get("body") or ""
        headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ",".join(values)
        is_json = headers.get("content-type", "application/json").startswith("application/json")
        body = json.loads(raw) if raw and is_json else None
        return Answer(result["statusCode"], headers, body, raw)

    def items(self) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=self.table, ConsistentRead=True)["Items"]

    def charge_items(self) -> list[dict[str, Any]]:
        return [i for i in self.items() if i["sk"]["S"] == "CHARGE"]

    def auths(self) -> list[Any]:
        return [e for e in self.simulator.journal if e.op == "auth"]


def item_charge_id(item: dict[str, Any]) -> str:
    """The id of a charge item as DynamoDB returns it: its key is CHARGE#<id>."""
    return str(item["pk"]["S"]).removeprefix("CHARGE#")


def aws_client(service: str, endpoint: str) -> Any:
    """A boto3 client for a local endpoint (DynamoDB Local or moto's server)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def stack(
    monkeypatch: pytest.MonkeyPatch,
    dynamodb_endpoint: str,
    moto_endpoint: str,
    simulator: EpaySimulator,
) -> Iterator[Stack]:
    dynamodb = aws_client("dynamodb", dynamodb_endpoint)
    secrets = aws_client("secretsmanager", moto_endpoint)
    # Every test gets its own table and secret (and queues), made from template.yaml's own
    # definitions. The template's SQS queues and event bus (issue 6) live on moto's server.
    moto_clients = {service: aws_client(service, moto_endpoint) for service in ("sqs", "events")}
    names = create_resources(
        load_template(ROOT / "template.yaml"),
        {"dynamodb": dynamodb, "secretsmanager": secrets, **moto_clients},
        stack_name=f"t{uuid.uuid4().hex[:12]}",
    )
    table, secret = names["PaymentsTable"], names["EpayCredentialsSecret"]
    env = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
        "EPAY_ENV": "test",
        "EPAY_OAUTH_URL": simulator.oauth_url,
        "EPAY_API_URL": simulator.api_url,
        "EPAY_SECRET_ID": secret,
        "PAYMENTS_TABLE": table,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "CAPTURE_MODE": "auto",
        "POWERTOOLS_SERVICE_NAME": "payments",
        "POWERTOOLS_METRICS_NAMESPACE": "Payments",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    simulator.reset()  # records and faults; its settings are put back after the test
    settings = {f.name: getattr(simulator.settings, f.name) for f in fields(simulator.settings)}
    bootstrap.reset()
    module = load_function("charges")
    yield Stack(table, dynamodb, simulator, module.lambda_handler, names)
    bootstrap.reset()
    # The simulator lives for the session: a setting a test flipped (postlink_drop, terminals,
    # ...) must not leak into the next test (reset() keeps settings by design).
    for name, value in settings.items():
        setattr(simulator.settings, name, value)


def load_event(path: str, **changes: Any) -> dict[str, Any]:
    """A canonical event from events/, with top-level fields replaced."""
    event: dict[str, Any] = json.loads((EVENTS / path).read_text())
    event = copy.deepcopy(event)
    event.update(changes)
    return event


def create_event(body: Any, key: str | None = "key-1", *, raw: str | None = None) -> dict[str, Any]:
    """POST /charges (an HTTP API event) with a JSON body (or a raw string) and an
    Idempotency-Key."""
    event = load_event("charges/create-charge.json")
    event["body"] = raw if raw is not None else json.dumps(body)
    headers = {k: v for k, v in event["headers"].items() if k != "idempotency-key"}
    if key is not None:
        headers["idempotency-key"] = key
    event["headers"] = headers
    return event


def at_path(event: dict[str, Any], path: str, **params: str) -> dict[str, Any]:
    """An HTTP API event moved to `path`, its route's path parameters `params`."""
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["pathParameters"] = dict(params)
    return event


def merchant_event(
    method: str,
    resource: str,
    *,
    body: Any = None,
    raw: str | None = None,
    key: str | None = None,
    query: Mapping[str, str] | None = None,
    **params: str,
) -> dict[str, Any]:
    """A signed merchant (HTTP API, payload 2.0) event for `method` `resource`, its path ids
    `params`, a JSON `body` (or a `raw` body text), an Idempotency-Key and a query."""
    event = load_event("charges/get-charge.json")
    path = resource
    for name, value in params.items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {resource}"
    event["requestContext"]["http"]["method"] = method
    at_path(event, path, **params)
    if not params:
        event.pop("pathParameters")
    text = raw if raw is not None else None if body is None else json.dumps(body)
    if text is not None:
        event["body"] = text
        event["headers"]["content-type"] = "application/json"
    if key is not None:
        event["headers"]["idempotency-key"] = key
    if query:
        event["queryStringParameters"] = dict(query)
        event["rawQueryString"] = urlencode(query)
    return event


def get_event(charge_id: str) -> dict[str, Any]:
    event = load_event("charges/get-charge.json")
    return at_path(event, f"/charges/{charge_id}", chargeId=charge_id)


def capture_event(charge_id: str, body: Any = None) -> dict[str, Any]:
    event = at_path(
        load_event("charges/capture-charge.json"),
        f"/charges/{charge_id}/capture",
        chargeId=charge_id,
    )
    if body is None:
        event.pop("body", None)
    else:
        event["body"] = json.dumps(body)
    return event


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test."""
    stream = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    handler.setStream(previous)  # type: ignore[attr-defined]


@contextmanager
def aws_calls() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """The AWS requests made inside the block, in order: (operation, parameters), as botocore
    sends them."""
    calls: list[tuple[str, dict[str, Any]]] = []
    make_call = BaseClient._make_api_call

    def recorded(client: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((operation, params))
        return make_call(client, operation, params)

    BaseClient._make_api_call = recorded  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseClient._make_api_call = make_call  # type: ignore[method-assign]
