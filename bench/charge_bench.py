"""Benchmark of POST /charges: cold import, warm overhead against a bare floor, calls per charge,
and the handler's peak RSS.

Run by `make bench` (PYTHONPATH=layers/payments:.). It prints numbers and never fails on them:
each target line only says "target met: yes/no". Everything listens on 127.0.0.1: DynamoDB Local
(a Java process), moto's server for Secrets Manager, and the ePay simulator (threads of this
process). The RSS figure comes from a separate child process (`--rss-child`) that only imports
the handler and charges against the servers this process started.

Top-level imports are stdlib only, so that the child and the cold-import subprocesses are not
charged for anything the benchmark itself needs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import logging
import os
import resource
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
HANDLER_PATH = ROOT / "functions" / "charges" / "app.py"
EVENT_PATH = ROOT / "events" / "charges" / "create-charge.json"
PYTHONPATH = os.pathsep.join([str(ROOT / "layers" / "payments"), str(ROOT)])
for _entry in reversed(PYTHONPATH.split(os.pathsep)):
    if _entry not in sys.path:
        sys.path.insert(0, _entry)

CARD_AUTH = "c0000000-0000-4000-8000-000000000001"  # AUTH, then our auto capture
CARD_CHARGE = "c0000000-0000-4000-8000-000000000002"  # single-stage: CHARGE at once
PUBLIC_BASE_URL = "http://127.0.0.1:3000"

IMPORT_RUNS = 7
WARMUP = 40
ROUNDS = 8
PER_ROUND = 25  # ROUNDS * PER_ROUND = 200 timed charges for the handler and for the floor
CALL_SAMPLES = 5
RSS_CHARGES = 50
SUBPROCESS_TIMEOUT = 90

TARGET_IMPORT_RATIO = 1.5
TARGET_WARM_RATIO = 1.3
TARGET_RSS_MB = 128.0


# --------------------------------------------------------------------------- small helpers


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    rank = max(1, -(-95 * len(ordered) // 100))
    return ordered[rank - 1]


def met(ok: bool) -> str:
    return "target met: yes" if ok else "target met: NO"


def load_handler() -> Any:
    """The charges handler, loaded by path like the local API Gateway does."""
    from local import apigw

    return apigw.load_handler(HANDLER_PATH.parent, "app.lambda_handler")


def Context(timeout_seconds: float = 28.0) -> Any:
    """A Lambda context for the charges function."""
    from local import apigw

    return apigw.LambdaContext(
        function_name="charges", memory_limit_in_mb=256, timeout_seconds=timeout_seconds
    )


class EventFactory:
    """The canonical POST /charges event with a fresh Idempotency-Key (and a chosen card)."""

    def __init__(self) -> None:
        self._base: dict[str, Any] = json.loads(EVENT_PATH.read_text())
        self._bodies: dict[str, str] = {}

    def make(self, card: str) -> dict[str, Any]:
        if card not in self._bodies:
            body = json.loads(self._base["body"])
            body["cardId"] = card
            self._bodies[card] = json.dumps(body)
        event = copy.deepcopy(self._base)
        key = f"bench-{uuid.uuid4().hex}"
        event["body"] = self._bodies[card]
        event["headers"]["Idempotency-Key"] = key
        event["multiValueHeaders"]["Idempotency-Key"] = [key]
        return event


@contextlib.contextmanager
def silenced(sink: TextIO) -> Iterator[None]:
    """Send the handler's output (Powertools JSON logs and EMF metrics) to `sink`.

    The Logger's handler holds the sys.stdout of import time, so its stream is swapped too.
    Records are still formatted and written: only the terminal is spared.
    """
    from payments.observability import logger

    handler = logger.registered_handler
    previous = handler.setStream(sink)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


def charge_once(handler: Callable[..., dict[str, Any]], event: dict[str, Any]) -> dict[str, Any]:
    return handler(event, Context())


def outcome(result: dict[str, Any]) -> str:
    try:
        status = json.loads(result.get("body") or "{}").get("status")
    except ValueError:
        status = None
    return f"{result.get('statusCode')}/{status}"


# --------------------------------------------------------------------------- 1. cold import

IMPORT_HANDLER = f"""
import json, sys, time
t0 = time.perf_counter()
import importlib.util
spec = importlib.util.spec_from_file_location("function_charges_app", {str(HANDLER_PATH)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t1 = time.perf_counter()
print(json.dumps({{"seconds": t1 - t0, "modules": len(sys.modules),
    "tracing_loaded": "aws_lambda_powertools.tracing" in sys.modules,
    "xray_loaded": "aws_xray_sdk" in sys.modules, "boto3_loaded": "boto3" in sys.modules}}))
"""

IMPORT_BOTO3 = """
import json, sys, time
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "modules": len(sys.modules)}))
"""

IMPORT_TRACING_ALONE = IMPORT_BOTO3.replace("import boto3", "import aws_lambda_powertools.tracing")


def after_handler(statement: str) -> str:
    """Code that imports the handler, then times `statement` alone (what it would add)."""
    return IMPORT_HANDLER.replace(
        "t1 = time.perf_counter()",
        f"t1 = time.perf_counter()\n{statement}\nt2 = time.perf_counter()",
    ).replace('{"seconds": t1 - t0,', '{"seconds": t2 - t1,')


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHONPATH
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `python -c code` (fresh interpreter) and parse the JSON its last stdout line holds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args, "-c", code],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=env or child_env(),
        cwd=ROOT,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed ({done.returncode}): {done.stderr[-800:]}")
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    data["wall"] = wall
    data["stderr"] = done.stderr
    return data


def importtime_top(limit: int = 6) -> list[tuple[str, float]]:
    """Self import time of the handler's import grouped by top-level package (-X importtime)."""
    data = run_python(IMPORT_HANDLER, "-X", "importtime")
    by_package: Counter[str] = Counter()
    for line in data["stderr"].splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split("|")
        if len(parts) != 3:
            continue
        self_us = int(parts[0].split(":")[1].strip())
        package = parts[2].strip().split(".")[0]
        by_package[package] += self_us
    return [(name, us / 1000) for name, us in by_package.most_common(limit)]


def bench_imports() -> dict[str, Any]:
    run_python(IMPORT_HANDLER)  # compile .pyc files once; not counted
    run_python(IMPORT_BOTO3)
    handler, boto3_only = [], []
    handler_wall, boto3_wall = [], []
    info: dict[str, Any] = {}
    for _ in range(IMPORT_RUNS):  # interleaved, so drift hits both alike
        got = run_python(IMPORT_HANDLER)
        handler.append(got["seconds"])
        handler_wall.append(got["wall"])
        info = got
        got = run_python(IMPORT_BOTO3)
        boto3_only.append(got["seconds"])
        boto3_wall.append(got["wall"])
    result: dict[str, Any] = {
        "handler_ms": median(handler) * 1000,
        "boto3_ms": median(boto3_only) * 1000,
        "handler_process_ms": median(handler_wall) * 1000,
        "boto3_process_ms": median(boto3_wall) * 1000,
        "handler_modules": info["modules"],
        "handler_loads_tracing": info["tracing_loaded"],
        "handler_loads_xray": info["xray_loaded"],
        "top_packages_ms": importtime_top(),
    }
    result["ratio"] = result["handler_ms"] / result["boto3_ms"]

    def timed(code: str) -> float:
        return median([run_python(code)["seconds"] for _ in range(3)]) * 1000

    if importlib.util.find_spec("aws_lambda_powertools.tracing") is not None:
        result["tracing_alone_ms"] = timed(IMPORT_TRACING_ALONE)
        result["tracing_extra_ms"] = timed(after_handler("import aws_lambda_powertools.tracing"))
    if importlib.util.find_spec("aws_xray_sdk") is not None:
        result["xray_extra_ms"] = timed(after_handler("import aws_xray_sdk.core"))
    return result


# --------------------------------------------------------------------------- the local stack


class LocalStack:
    """DynamoDB Local, moto (Secrets Manager) and the ePay simulator on 127.0.0.1."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        from local.dynamodb_local import DynamoDBLocal, free_port
        from local.epay_sim import (
            TEST_CLIENT_ID,
            TEST_CLIENT_SECRET,
            TEST_TERMINAL_ID,
            EpaySimulator,
        )

        dynamodb = DynamoDBLocal().start()
        stack.callback(dynamodb.stop)
        port = free_port()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        # postLinks go nowhere: nothing listens on PUBLIC_BASE_URL and the delivery threads
        # would only add noise to the timings.
        self.simulator = EpaySimulator(host="127.0.0.1", port=0, postlink_drop=True).start()
        stack.callback(self.simulator.stop)

        suffix = uuid.uuid4().hex[:12]
        self.table = f"payments-bench-{suffix}"
        self.secret = f"epay-bench-{suffix}"
        self.credentials = {
            "client_id": TEST_CLIENT_ID,
            "client_secret": TEST_CLIENT_SECRET,
            "terminal_id": TEST_TERMINAL_ID,
        }
        self.env = {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_DYNAMODB": dynamodb.url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://127.0.0.1:{port}",
            "EPAY_ENV": "test",
            "EPAY_OAUTH_URL": self.simulator.oauth_url,
            "EPAY_API_URL": self.simulator.api_url,
            "EPAY_SECRET_ID": self.secret,
            "PAYMENTS_TABLE": self.table,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "CAPTURE_MODE": "auto",
            "POWERTOOLS_SERVICE_NAME": "payments",
            "POWERTOOLS_METRICS_NAMESPACE": "Payments",
        }
        os.environ.update(self.env)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        os.environ.pop("AWS_PROFILE", None)
        create_table(boto3.client("dynamodb", endpoint_url=dynamodb.url), self.table)
        boto3.client(
            "secretsmanager", endpoint_url=self.env["AWS_ENDPOINT_URL_SECRETS_MANAGER"]
        ).create_secret(Name=self.secret, SecretString=json.dumps(self.credentials))


def create_table(client: Any, name: str) -> None:
    """Create the table exactly as template.yaml defines PaymentsTable."""
    from local.template import load_template

    props = load_template(ROOT / "template.yaml")["Resources"]["PaymentsTable"]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    client.create_table(**kwargs)
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50}
    )


# --------------------------------------------------------------------------- 2. the floor


class Floor:
    """The same network calls as one auto-capture charge, and nothing else: one urllib3 pool,
    one boto3 DynamoDB client (the bootstrap's botocore Config), prebuilt low-level items."""

    def __init__(self, local: LocalStack) -> None:
        import boto3
        import urllib3

        from payments.bootstrap import AWS_CONFIG

        self._ddb = boto3.session.Session().client("dynamodb", config=AWS_CONFIG)
        self._http = urllib3.PoolManager(maxsize=10, retries=False)
        self._timeout = urllib3.Timeout(connect=3.0, read=10.0)
        self._table = local.table
        self._oauth = local.env["EPAY_OAUTH_URL"]
        self._api = local.env["EPAY_API_URL"].rstrip("/")
        self._creds = local.credentials
        self._body = json.loads(json.loads(EVENT_PATH.read_text())["body"])
        self._terminal_token = self._token({})
        self.failures = 0

    def _token(self, extra: dict[str, str]) -> str:
        from urllib.parse import urlencode

        form = {
            "grant_type": "client_credentials",
            "scope": "webapi usermanagement email_send verification statement statistics payment",
            "client_id": self._creds["client_id"],
            "client_secret": self._creds["client_secret"],
            "terminal": self._creds["terminal_id"],
            **extra,
        }
        answer = self._http.request(
            "POST",
            self._oauth,
            body=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=self._timeout,
        )
        if answer.status != 200:
            self.failures += 1
        token: str = json.loads(answer.data)["access_token"]
        return token

    def charge(self) -> None:
        ddb, table, body = self._ddb, self._table, self._body
        key = f"floor-{uuid.uuid4().hex}"
        ddb.get_item(
            TableName=table,
            Key={"pk": {"S": f"IDEMPOTENCY#{key}"}, "sk": {"S": "IDEMPOTENCY"}},
            ConsistentRead=True,
        )
        counter = ddb.update_item(
            TableName=table,
            Key={"pk": {"S": "COUNTER#invoice"}, "sk": {"S": "COUNTER"}},
            UpdateExpression="ADD #n :one",
            ExpressionAttributeNames={"#n": "value"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        invoice = counter["Attributes"]["value"]["N"].zfill(9)
        charge_id = "ch_" + secrets.token_hex(16)
        secret_hash = secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat()
        epoch = int(time.time())
        pk = {"S": f"CHARGE#{charge_id}"}
        charge = {
            "pk": pk,
            "sk": {"S": "CHARGE"},
            "id": {"S": charge_id},
            "invoiceId": {"S": invoice},
            "status": {"S": "PROCESSING"},
            "version": {"N": "1"},
            "amount": {"N": "1500.00"},
            "currency": {"S": body["currency"]},
            "accountId": {"S": body["accountId"]},
            "cardId": {"S": body["cardId"]},
            "description": {"S": body["description"]},
            "capture": {"S": "auto"},
            "recurrent": {"BOOL": False},
            "language": {"S": body["language"]},
            "idempotencyKey": {"S": key},
            "requestHash": {"S": "0" * 64},
            "secretHashDigest": {"S": "1" * 64},
            "createdAt": {"S": now},
            "updatedAt": {"S": now},
            "name": {"S": body["name"]},
            "email": {"S": body["email"]},
            "phone": {"S": body["phone"]},
            "backLink": {"S": body["backLink"]},
            "failureBackLink": {"S": body["failureBackLink"]},
            "needsCheck": {"BOOL": False},
            "epay": {"M": {}},
        }
        new = "attribute_not_exists(pk)"
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": charge, "ConditionExpression": new}},
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "pk": {"S": f"IDEMPOTENCY#{key}"},
                            "sk": {"S": "IDEMPOTENCY"},
                            "chargeId": {"S": charge_id},
                            "requestHash": {"S": "0" * 64},
                            "expiresAt": {"N": str(epoch + 30 * 86400)},
                        },
                        "ConditionExpression": new,
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "pk": {"S": f"INVOICE#{invoice}"},
                            "sk": {"S": "INVOICE"},
                            "chargeId": {"S": charge_id},
                        },
                        "ConditionExpression": new,
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "pk": {"S": f"INVOICE_SUFFIX#{invoice[-6:]}"},
                            "sk": {"S": "INVOICE_SUFFIX"},
                            "invoiceId": {"S": invoice},
                            "chargeId": {"S": charge_id},
                            "expiresAt": {"N": str(epoch + 400 * 86400)},
                        },
                        "ConditionExpression": "attribute_not_exists(pk) OR expiresAt < :now",
                        "ExpressionAttributeValues": {":now": {"N": str(epoch)}},
                    }
                },
                {
                    "Put": {
                        "TableName": table,
                        "Item": {
                            "pk": pk,
                            "sk": {"S": "HISTORY#000001"},
                            "to": {"S": "PROCESSING"},
                            "at": {"S": now},
                            "source": {"S": "api"},
                        },
                        "ConditionExpression": new,
                    }
                },
            ]
        )
        links = {
            "postLink": f"{PUBLIC_BASE_URL}/epay/postlink",
            "failurePostLink": f"{PUBLIC_BASE_URL}/epay/postlink/failure",
        }
        token = self._token(
            {"invoiceID": invoice, "amount": "1500.00", "currency": "KZT", **links}
            | {"secret_hash": secret_hash}
        )
        auth = {
            "amount": 1500.00,
            "currency": "KZT",
            "terminalId": self._creds["terminal_id"],
            "invoiceId": invoice,
            "description": body["description"],
            "accountId": body["accountId"],
            "language": body["language"],
            "paymentType": "cardId",
            "recurrent": False,
            "cardId": {"id": body["cardId"]},
            **links,
            "name": body["name"],
            "email": body["email"],
            "phone": body["phone"],
            "backLink": body["backLink"],
            "failureBackLink": body["failureBackLink"],
        }
        answer = self._http.request(
            "POST",
            f"{self._api}/payments/cards/auth",
            body=json.dumps(auth).encode(),
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
            },
            timeout=self._timeout,
        )
        result = json.loads(answer.data)
        transaction = result.get("id", "missing")
        captured = self._http.request(
            "POST",
            f"{self._api}/operation/{transaction}/charge",
            body=b"",
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self._terminal_token}",
            },
            timeout=self._timeout,
        )
        if answer.status != 200 or result.get("status") != "AUTH" or captured.status != 200:
            self.failures += 1
        later = datetime.now(UTC).isoformat()
        final = {
            **charge,
            "status": {"S": "CAPTURED"},
            "version": {"N": "3"},
            "updatedAt": {"S": later},
            "capturedAmount": {"N": "1500.00"},
            "epay": {
                "M": {
                    "transactionId": {"S": str(transaction)},
                    "reference": {"S": str(result.get("reference"))},
                    "approvalCode": {"S": str(result.get("approvalCode"))},
                    "cardMask": {"S": str(result.get("cardMask"))},
                }
            },
        }
        history = [
            ("HISTORY#000002", "PROCESSING", "AUTHORIZED", ""),
            ("HISTORY#000003", "AUTHORIZED", "CAPTURED", "auto capture"),
        ]
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": table,
                    "Item": final,
                    "ConditionExpression": "#s = :status AND #v = :version",
                    "ExpressionAttributeNames": {"#s": "status", "#v": "version"},
                    "ExpressionAttributeValues": {
                        ":status": {"S": "PROCESSING"},
                        ":version": {"N": "1"},
                    },
                }
            }
        ]
        for sk, before, after, detail in history:
            item = {
                "pk": pk,
                "sk": {"S": sk},
                "from": {"S": before},
                "to": {"S": after},
                "at": {"S": later},
                "source": {"S": "api"},
            }
            if detail:
                item["detail"] = {"S": detail}
            items.append({"Put": {"TableName": table, "Item": item, "ConditionExpression": new}})
        ddb.transact_write_items(TransactItems=items)


# --------------------------------------------------------------------------- 2. warm timings


def bench_warm(
    handler: Callable[..., dict[str, Any]], floor: Floor, sink: TextIO
) -> dict[str, Any]:
    events = EventFactory()
    outcomes: Counter[str] = Counter()
    with silenced(sink):
        for _ in range(WARMUP):
            charge_once(handler, events.make(CARD_AUTH))
            floor.charge()
    handler_times: list[float] = []
    floor_times: list[float] = []
    # CPU of the calling thread only: the client side (handler or floor, boto3, urllib3), not
    # the simulator's threads nor DynamoDB Local's process.
    handler_cpu: list[float] = []
    floor_cpu: list[float] = []

    def run_handler() -> None:
        with silenced(sink):
            for _ in range(PER_ROUND):
                event = events.make(CARD_AUTH)
                cpu, started = time.thread_time(), time.perf_counter()
                result = charge_once(handler, event)
                handler_times.append(time.perf_counter() - started)
                handler_cpu.append(time.thread_time() - cpu)
                outcomes[outcome(result)] += 1

    def run_floor() -> None:
        for _ in range(PER_ROUND):
            cpu, started = time.thread_time(), time.perf_counter()
            floor.charge()
            floor_times.append(time.perf_counter() - started)
            floor_cpu.append(time.thread_time() - cpu)

    for round_no in range(ROUNDS):  # alternate which goes first, so drift hits both alike
        first, second = (run_handler, run_floor) if round_no % 2 == 0 else (run_floor, run_handler)
        first()
        second()
    result = {
        "n": len(handler_times),
        "handler_median_ms": median(handler_times) * 1000,
        "handler_p95_ms": p95(handler_times) * 1000,
        "floor_median_ms": median(floor_times) * 1000,
        "floor_p95_ms": p95(floor_times) * 1000,
        "handler_cpu_median_ms": median(handler_cpu) * 1000,
        "floor_cpu_median_ms": median(floor_cpu) * 1000,
        "handler_outcomes": dict(outcomes),
        "floor_failures": floor.failures,
    }
    result["ratio_median"] = result["handler_median_ms"] / result["floor_median_ms"]
    result["ratio_p95"] = result["handler_p95_ms"] / result["floor_p95_ms"]
    result["overhead_median_ms"] = result["handler_median_ms"] - result["floor_median_ms"]
    result["ratio_cpu"] = result["handler_cpu_median_ms"] / result["floor_cpu_median_ms"]
    return result


# --------------------------------------------------------------------------- 3. calls per charge

WRITE_OPERATIONS = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "TransactWriteItems",
        "BatchWriteItem",
    }
)


class CallCounter:
    """Counts API calls (before-call) and HTTP attempts (before-send) per service/operation."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.sends: Counter[str] = Counter()

    def on_call(self, event_name: str, **_kwargs: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls[f"{service}.{operation}"] += 1

    def on_send(self, event_name: str, **_kwargs: Any) -> None:
        self.sends[event_name.split(".")[1]] += 1

    def attach(self, clients: list[Any]) -> Callable[[], None]:
        for client in clients:
            client.meta.events.register("before-call", self.on_call)
            client.meta.events.register("before-send", self.on_send)

        def detach() -> None:
            for client in clients:
                client.meta.events.unregister("before-call", self.on_call)
                client.meta.events.unregister("before-send", self.on_send)

        return detach


def bench_calls(
    handler: Callable[..., dict[str, Any]], local: LocalStack, sink: TextIO
) -> dict[str, Any]:
    from payments import bootstrap

    clients = [bootstrap.store()._client, bootstrap._secrets().client]
    events = EventFactory()
    results: dict[str, Any] = {}
    for label, card in (("auto_capture", CARD_AUTH), ("single_stage", CARD_CHARGE)):
        with silenced(sink):  # one untimed charge first, so this card's path is warm too
            charge_once(handler, events.make(card))
        samples: list[dict[str, Any]] = []
        for _ in range(CALL_SAMPLES):
            counter = CallCounter()
            detach = counter.attach(clients)
            journal_before = len(local.simulator.journal)
            try:
                with silenced(sink):
                    answer = charge_once(handler, events.make(card))
            finally:
                detach()
            epay_ops = Counter(e.op for e in local.simulator.journal[journal_before:])
            ddb = {
                k.split(".", 1)[1]: v for k, v in counter.calls.items() if k.startswith("dynamodb.")
            }
            samples.append(
                {
                    "outcome": outcome(answer),
                    "epay": sum(epay_ops.values()),
                    "epay_ops": dict(epay_ops),
                    "dynamodb_writes": sum(v for k, v in ddb.items() if k in WRITE_OPERATIONS),
                    "dynamodb_reads": sum(v for k, v in ddb.items() if k not in WRITE_OPERATIONS),
                    "dynamodb_ops": ddb,
                    "dynamodb_http_sends": counter.sends["dynamodb"],
                    "secretsmanager": sum(
                        v for k, v in counter.calls.items() if k.startswith("secretsmanager.")
                    ),
                }
            )
        summary: dict[str, Any] = {}
        for field in ("epay", "dynamodb_writes", "dynamodb_reads", "secretsmanager"):
            values = [s[field] for s in samples]
            summary[field] = max(values)
            summary[f"{field}_min"] = min(values)
        summary["epay_ops"] = samples[-1]["epay_ops"]
        summary["dynamodb_ops"] = samples[-1]["dynamodb_ops"]
        summary["dynamodb_http_sends_max"] = max(s["dynamodb_http_sends"] for s in samples)
        summary["outcomes"] = dict(Counter(s["outcome"] for s in samples))
        results[label] = summary
    return results


# --------------------------------------------------------------------------- 4. RSS (child)


def maxrss_mb() -> float:
    """getrusage(RUSAGE_SELF).ru_maxrss in MB.

    On Linux a child started by subprocess (vfork + exec) inherits its parent's high-water mark
    in this figure, so in the child it is at least the parent's peak; see peak_rss_mb.
    """
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / (1024 * 1024)


def peak_rss_mb() -> tuple[float, str]:
    """This process's own peak RSS: VmHWM of /proc/self/status (reset at exec), else ru_maxrss."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "VmHWM"
    return maxrss_mb(), "ru_maxrss"


def rss_child(charges: int) -> None:
    """Import the handler, charge `charges` times against the parent's servers, print RSS."""
    start, source = peak_rss_mb()
    handler = load_handler()
    after_import, _ = peak_rss_mb()
    events = EventFactory()
    outcomes: Counter[str] = Counter()
    with open(os.devnull, "w") as sink, silenced(sink):
        outcomes[outcome(charge_once(handler, events.make(CARD_AUTH)))] += 1
        after_first, _ = peak_rss_mb()
        for _ in range(charges - 1):
            outcomes[outcome(charge_once(handler, events.make(CARD_AUTH)))] += 1
    print(
        json.dumps(
            {
                "source": source,
                "interpreter_mb": start,
                "after_import_mb": after_import,
                "after_first_charge_mb": after_first,
                "peak_mb": peak_rss_mb()[0],
                "ru_maxrss_mb": maxrss_mb(),
                "charges": charges,
                "outcomes": dict(outcomes),
            }
        ),
        file=sys.__stdout__,
        flush=True,
    )


def bench_rss(local: LocalStack) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(RSS_CHARGES)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=child_env(local.env),
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"RSS child failed ({done.returncode}): {done.stderr[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- report


def report(
    imports: dict[str, Any],
    warm: dict[str, Any],
    calls: dict[str, Any],
    rss: dict[str, Any],
    parent_rss: float,
    elapsed: float,
) -> dict[str, Any]:
    auto, single = calls["auto_capture"], calls["single_stage"]
    print()
    print("POST /charges benchmark (functions/charges/app.py)")
    print("=" * 100)
    print(f"{'measure':<46}{'value':>22}   target")
    print("-" * 100)

    def row(name: str, value: str, target: str = "") -> None:
        print(f"{name:<46}{value:>22}   {target}")

    print(f"1. cold import (fresh subprocess, median of {IMPORT_RUNS}, perf_counter in-process)")
    row("  handler module import", f"{imports['handler_ms']:.1f} ms")
    row("  import boto3 alone", f"{imports['boto3_ms']:.1f} ms")
    row(
        "  ratio handler / boto3",
        f"{imports['ratio']:.2f}",
        f"<= {TARGET_IMPORT_RATIO}  {met(imports['ratio'] <= TARGET_IMPORT_RATIO)}",
    )
    row(
        "  whole process (spawn..exit), handler / boto3",
        f"{imports['handler_process_ms']:.0f} / {imports['boto3_process_ms']:.0f} ms",
    )
    row("  modules loaded by the handler import", str(imports["handler_modules"]))
    top = ", ".join(f"{name} {ms:.0f}" for name, ms in imports["top_packages_ms"])
    print(f"  self import time by package (ms, -X importtime, one run): {top}")
    if "tracing_alone_ms" in imports:
        row("  import aws_lambda_powertools.tracing alone", f"{imports['tracing_alone_ms']:.1f} ms")
        row(
            "  + the same, after the handler import",
            f"{imports['tracing_extra_ms']:.1f} ms",
            "(already loaded: aws_lambda_powertools/__init__ imports Tracer)"
            if imports["handler_loads_tracing"]
            else "",
        )
    if "xray_extra_ms" in imports:
        row("  + import aws_xray_sdk.core, after the handler", f"{imports['xray_extra_ms']:.1f} ms")
        print(
            "  Tracer: aws-xray-sdk installed; the handler does not use Tracer and "
            + ("DOES load" if imports["handler_loads_xray"] else "does not load")
            + " the X-Ray SDK"
        )
    else:
        print("  Tracer: not installed, not used")
    print()
    print(
        f"2. warm POST /charges, card ...0001 auto capture, n={warm['n']} each "
        f"(after {WARMUP} warm-up), interleaved in {ROUNDS} rounds"
    )
    row(
        "  handler median / p95",
        f"{warm['handler_median_ms']:.2f} / {warm['handler_p95_ms']:.2f} ms",
    )
    row("  floor median / p95", f"{warm['floor_median_ms']:.2f} / {warm['floor_p95_ms']:.2f} ms")
    row(
        "  ratio median (p95)",
        f"{warm['ratio_median']:.2f} ({warm['ratio_p95']:.2f})",
        f"<= {TARGET_WARM_RATIO}  {met(warm['ratio_median'] <= TARGET_WARM_RATIO)}",
    )
    row("  handler overhead over floor (median)", f"{warm['overhead_median_ms']:.2f} ms")
    row(
        "  client CPU/charge (thread_time) handler/floor",
        f"{warm['handler_cpu_median_ms']:.2f} / {warm['floor_cpu_median_ms']:.2f} ms",
        f"ratio {warm['ratio_cpu']:.2f}",
    )
    row("  handler outcomes (status/charge status)", json.dumps(warm["handler_outcomes"]))
    row("  floor failures", str(warm["floor_failures"]))
    print(
        "  logging: sys.stdout redirected to os.devnull and the Powertools Logger's stream set to"
        " it\n  while the handler runs (records and EMF are still formatted and written)"
    )
    print()
    print(f"3. calls per warm charge (max over {CALL_SAMPLES} charges; botocore before-call hooks")
    print("   on the bootstrap's DynamoDB and Secrets Manager clients, ePay from the sim journal)")
    for label, data, epay_target in (
        ("auto capture ...0001", auto, 3),
        ("single-stage ...0002", single, 2),
    ):
        print(f"  {label}: outcomes {json.dumps(data['outcomes'])}")
        row(
            "    ePay calls",
            f"{data['epay']}  {json.dumps(data['epay_ops'])}",
            f"== {epay_target}  {met(data['epay'] == data['epay_min'] == epay_target)}",
        )
        row(
            "    DynamoDB writes",
            str(data["dynamodb_writes"]),
            f"<= 3  {met(data['dynamodb_writes'] <= 3)}",
        )
        row("    DynamoDB reads", str(data["dynamodb_reads"]))
        print(
            f"    DynamoDB operations: {json.dumps(data['dynamodb_ops'])}"
            f"  (HTTP sends incl. retries: {data['dynamodb_http_sends_max']})"
        )
        row(
            "    Secrets Manager calls",
            str(data["secretsmanager"]),
            f"== 0  {met(data['secretsmanager'] == 0)}",
        )
    print()
    print(
        f"4. peak RSS ({rss['source']}), handler alone in a child process, {rss['charges']} charges"
    )
    row("  interpreter at start", f"{rss['interpreter_mb']:.1f} MB")
    row("  after handler import", f"{rss['after_import_mb']:.1f} MB")
    row("  after first (cold) charge", f"{rss['after_first_charge_mb']:.1f} MB")
    row(
        "  peak after all charges",
        f"{rss['peak_mb']:.1f} MB",
        f"<= {TARGET_RSS_MB:.0f} MB  {met(rss['peak_mb'] <= TARGET_RSS_MB)}",
    )
    row("  child outcomes", json.dumps(rss["outcomes"]))
    row("  (child ru_maxrss, inherits parent's on Linux)", f"{rss['ru_maxrss_mb']:.1f} MB")
    row("  (this process, with moto + simulator)", f"{parent_rss:.1f} MB")
    print("-" * 100)
    print(f"total run time {elapsed:.0f} s")
    summary = {
        "cold_import": {k: v for k, v in imports.items() if k != "top_packages_ms"}
        | {"target_ratio": TARGET_IMPORT_RATIO, "met": imports["ratio"] <= TARGET_IMPORT_RATIO},
        "warm": warm
        | {"target_ratio": TARGET_WARM_RATIO, "met": warm["ratio_median"] <= TARGET_WARM_RATIO},
        "calls": calls,
        "rss": rss
        | {
            "parent_mb": parent_rss,
            "target_mb": TARGET_RSS_MB,
            "met": rss["peak_mb"] <= TARGET_RSS_MB,
        },
        "elapsed_s": elapsed,
    }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss-child", type=int, metavar="CHARGES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return 0

    started = time.perf_counter()
    print("cold imports ...", flush=True)
    imports = bench_imports()
    with contextlib.ExitStack() as stack, open(os.devnull, "w") as sink:
        print("starting DynamoDB Local, moto, ePay simulator ...", flush=True)
        local = LocalStack(stack)
        handler = load_handler()
        print("warm charges ...", flush=True)
        floor = Floor(local)
        warm = bench_warm(handler, floor, sink)
        print("calls per charge ...", flush=True)
        calls = bench_calls(handler, local, sink)
        print("RSS child ...", flush=True)
        rss = bench_rss(local)
        parent_rss = peak_rss_mb()[0]
    summary = report(imports, warm, calls, rss, parent_rss, time.perf_counter() - started)
    print(json.dumps(summary, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
