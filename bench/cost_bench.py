"""What one approved charge costs in AWS, from the requests it really makes, per million charges.

Run by `make bench` (PYTHONPATH=layers/payments:.). The local stack runs as `make run` runs it
(DynamoDB Local, moto, the ePay simulator delivering its postLinks, the table's stream feeding the
charge events function), and the script makes approved charges through the local API over HTTP
(card `...0001`: ePay answers AUTH, the service captures; `--card` picks another). Everything the
charges cause is counted where it happens, in this process:

- API Gateway requests and Lambda invocations at the local runtime's `call_handler` (every
  function, the postLink ePay sends and the stream batches included), with each invocation's
  wall time, the ePay calls it made and the bytes it logged (Powertools JSON lines and EMF);
- AWS requests at botocore (`BaseClient._make_api_call`), attributed to the invocation that made
  them. DynamoDB capacity is computed from the items themselves (each written item is read
  before and after by an uncounted client) by DynamoDB's published rules, because DynamoDB
  Local's own ConsumedCapacity is not faithful for transactions and indexes.

The price table (us-east-1 list prices, arm64, on-demand) and every assumption are printed with
the result. Nothing fails on the figure: the target line only says whether it was met. A single
JSON line with the same numbers ends the output.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import math
import re
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock
from urllib.parse import urlsplit

from payments.charges.invoices import BLOCK, SHARDS

if TYPE_CHECKING:
    from local.run import LocalStack

ROOT = Path(__file__).resolve().parents[1]
EVENT_PATH = ROOT / "events" / "charges" / "create-charge.json"
CARD_AUTH = "c0000000-0000-4000-8000-000000000001"
TARGET_PER_MILLION = 15.0
MEMORY_GB = 0.25  # the template's MemorySize: 256

# us-east-1 list prices (USD), December 2026, for what one charge uses.
PRICES: dict[str, tuple[float, str]] = {
    "apigw_request": (1.00 / 1e6, "API Gateway HTTP API, per request (first 300 M a month)"),
    "lambda_request": (0.20 / 1e6, "Lambda, per request"),
    "lambda_gb_s": (0.0000133334, "Lambda arm64, per GB-second"),
    "wru": (0.625 / 1e6, "DynamoDB on-demand, per write request unit"),
    "rru": (0.125 / 1e6, "DynamoDB on-demand, per read request unit"),
    "event": (1.00 / 1e6, "EventBridge custom event (64 KB chunk)"),
    "sqs_request": (0.40 / 1e6, "SQS standard, per request (64 KB chunk)"),
    "log_gb": (0.50, "CloudWatch Logs ingestion, per GB (standard class)"),
    "secret_call": (0.05 / 1e4, "Secrets Manager, per API call"),
    "metric_put": (0.01 / 1e3, "CloudWatch PutMetricData, per call (EMF is in the logs price)"),
}
# Lambda writes START, END and REPORT lines of its own for every invocation.
PLATFORM_LOG_BYTES = 330
# The values API Gateway fills the merchant API's access log format (template.yaml, MerchantApi)
# with for a signed POST /charges (one line a request, into ApiAccessLogGroup; priced as logs).
_ACCESS_LOG_CONTEXT = {
    "requestId": "JKJaXmPLvHcESHA=",
    "requestTime": "06/Dec/2026:10:55:58 +0000",
    "identity.sourceIp": "203.0.113.10",
    "identity.userArn": "arn:aws:iam::123456789012:user/merchant-backend",
    "routeKey": "POST /charges",
    "path": "/charges",
    "status": "201",
    "responseLength": "1105",
    "responseLatency": "612",
    "integrationLatency": "598",
    "integrationStatus": "200",
    "error.message": "-",
    "authorizer.error": "-",
}
EPAY_LATENCY_MS = 150.0  # assumed round trip of one ePay call from AWS (local: a few ms)
STREAM_BATCH = 25  # the charge events function's BatchSize: records per invocation at load
POSTLINK_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class Sizes:
    """How many charges are counted (after warm-up)."""

    # Every invoice ring takes its first slot (which writes a mark); a container stays on a ring
    # for BLOCK charges, so the warm-up takes that many on each.
    warmup: int = max(40, SHARDS * BLOCK)
    charges: int = 40


SMOKE = Sizes(warmup=1, charges=3)


# --------------------------------------------------------------------------- DynamoDB sizing


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (low-level JSON form)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        digits = str(raw).lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(str(raw)) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: v}) for v in raw)
    raise ValueError(kind)


def item_size(item: Mapping[str, Any] | None) -> int:
    """Bytes of a whole item (0 for none)."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


@dataclass(frozen=True)
class Index:
    """A global secondary index: its key attributes and what it projects."""

    name: str
    keys: tuple[str, ...]
    projection: str
    include: tuple[str, ...] = ()

    def entry(self, item: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The index's copy of an item (None when the item is not in this sparse index)."""
        if not item or any(k not in item for k in self.keys):
            return None
        if self.projection == "ALL":
            return dict(item)
        wanted = {"pk", "sk", *self.keys, *self.include}
        return {k: v for k, v in item.items() if k in wanted}

    def writes(self, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> float:
        """Write units this index spends when `before` becomes `after` (100 bytes of overhead
        an entry; a changed key is a delete and a put)."""
        old, new = self.entry(before), self.entry(after)
        if old == new:
            return 0.0
        units = 0.0
        keys_moved = (
            old is not None and new is not None and any(old.get(k) != new.get(k) for k in self.keys)
        )
        if old is not None and (new is None or keys_moved):
            units += math.ceil((item_size(old) + 100) / 1024)
        if new is not None:
            units += math.ceil((item_size(new) + 100) / 1024)
        return units


def access_log_bytes(template: Mapping[str, Any]) -> int:
    """Bytes of one merchant API access log line: the template's format, filled (0 without
    one)."""

    def formats(node: Any) -> Iterator[str]:
        if isinstance(node, Mapping):
            if isinstance(node.get("Format"), str):
                yield node["Format"]
            for value in node.values():
                yield from formats(value)
        elif isinstance(node, list):
            for value in node:
                yield from formats(value)

    setting = template["Resources"]["MerchantApi"]["Properties"].get("AccessLogSettings")
    line = next(formats(setting), "")
    filled = re.sub(r"\$context\.([A-Za-z.]+)", lambda m: _ACCESS_LOG_CONTEXT[m.group(1)], line)
    return len(filled.encode()) + 1 if line else 0


def table_indexes(template: Mapping[str, Any]) -> list[Index]:
    """The payments table's global secondary indexes, read from template.yaml."""
    table = template["Resources"]["PaymentsTable"]["Properties"]
    found = []
    for gsi in table.get("GlobalSecondaryIndexes", []):
        projection = gsi["Projection"]
        found.append(
            Index(
                gsi["IndexName"],
                tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                projection["ProjectionType"],
                tuple(projection.get("NonKeyAttributes", ())),
            )
        )
    return found


# --------------------------------------------------------------------------- the meter


@dataclass
class Invocation:
    """What one Lambda invocation did."""

    function: str
    api: bool
    records: int = 0
    seconds: float = 0.0
    epay_calls: int = 0
    log_bytes: int = 0
    aws: Counter[str] = field(default_factory=Counter)
    units: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # by request
    lines: list[str] = field(default_factory=list)
    wru: float = 0.0
    rru: float = 0.0
    events: int = 0
    sqs: int = 0
    secrets: int = 0


class Meter:
    """Counts what every invocation in this process does (see the module's docstring)."""

    def __init__(self, stack: LocalStack, indexes: list[Index]) -> None:
        import boto3

        from payments.clients import AWS_CONFIG

        self.invocations: list[Invocation] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._indexes = indexes
        self._epay = {urlsplit(stack.epay_api_url).port, urlsplit(stack.epay_oauth_url).port}
        self._peek = boto3.session.Session().client(
            "dynamodb", endpoint_url=stack.dynamodb_endpoint, config=AWS_CONFIG
        )
        self.unattributed: Counter[str] = Counter()
        self.keep_lines = False
        self.access_log_bytes = 0  # one merchant API access log line (access_log_bytes)

    @property
    def current(self) -> Invocation | None:
        """The invocation this thread runs, if any."""
        return getattr(self._local, "invocation", None)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Patch the counting points for the duration of the block."""
        import botocore.client
        import urllib3

        import local.apigw.runtime as runtime
        import local.workers as workers
        from payments.observability import logger

        meter = self
        make_call = botocore.client.BaseClient._make_api_call
        urlopen = urllib3.HTTPConnectionPool.urlopen
        call_handler = runtime.call_handler

        def counted_handler(handler: Any, event: dict[str, Any], context: Any) -> Any:
            invocation = Invocation(
                function=context.function_name,
                # Through API Gateway: an HTTP API event (a route in routeKey; the merchant API,
                # priced as such). A function URL's ("$default", the postLink) bills Lambda only.
                # (The REST API's public pages are not on the path of an approved charge.)
                api=" " in str(event.get("routeKey") or ""),
                records=len(event.get("Records") or []),
            )
            previous = meter.current
            meter._local.invocation = invocation
            started = time.perf_counter()
            try:
                return call_handler(handler, event, context)
            finally:
                invocation.seconds = time.perf_counter() - started
                meter._local.invocation = previous
                with meter._lock:
                    meter.invocations.append(invocation)

        def counted_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if getattr(meter._local, "peeking", False):
                return make_call(client, operation, params)
            service = client.meta.service_model.service_name
            invocation = meter.current
            if invocation is None:
                meter.unattributed[f"{service}.{operation}"] += 1
                return make_call(client, operation, params)
            invocation.aws[f"{service}.{operation}"] += 1
            if service == "dynamodb":
                return meter._dynamodb(client, invocation, operation, params, make_call)
            if service == "events" and operation == "PutEvents":
                invocation.events += sum(
                    max(1, math.ceil(len(json.dumps(e, default=str).encode()) / 65536))
                    for e in params["Entries"]
                )
            elif service == "sqs":
                invocation.sqs += 1
            elif service == "secretsmanager":
                invocation.secrets += 1
            return make_call(client, operation, params)

        def counted_open(pool: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            invocation = meter.current
            if invocation is not None and pool.port in meter._epay:
                invocation.epay_calls += 1
            return urlopen(pool, method, url, *args, **kwargs)

        sink = _CountingSink(self)
        with contextlib.ExitStack() as patches:
            for target, name, replacement in (
                (botocore.client.BaseClient, "_make_api_call", counted_call),
                (urllib3.HTTPConnectionPool, "urlopen", counted_open),
                (runtime, "call_handler", counted_handler),
                (workers, "call_handler", counted_handler),
            ):
                patches.enter_context(mock.patch.object(target, name, replacement))
            stream: Any = logger.registered_handler
            patches.callback(stream.setStream, stream.setStream(sink))
            patches.enter_context(contextlib.redirect_stdout(sink))  # EMF metrics are printed
            yield

    # ---------------------------------------------------------------- DynamoDB capacity

    def _peek_item(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        self._local.peeking = True
        try:
            found = self._peek.get_item(TableName=table, Key=dict(key), ConsistentRead=True)
        finally:
            self._local.peeking = False
        item: dict[str, Any] | None = found.get("Item")
        return item

    def _dynamodb(
        self,
        client: Any,
        invocation: Invocation,
        operation: str,
        params: dict[str, Any],
        make_call: Any,
    ) -> Any:
        writes = _written_keys(operation, params)
        before = {(t, k): self._peek_item(t, _key_dict(k)) for t, k in writes}
        try:
            answer = make_call(client, operation, params)
        except Exception:
            # A refused conditional write still costs its units (the item's size).
            for table_key in writes:
                invocation.wru += _units(item_size(before[table_key]), 1024) * _factor(operation)
            raise
        for table_key in writes:
            table, key = table_key
            after = self._peek_item(table, _key_dict(key))
            size = max(item_size(before[table_key]), item_size(after))
            units = _units(size, 1024) * _factor(operation)
            invocation.wru += units
            pk = dict(table_key[1]).get("pk", "")
            kind = json.loads(pk).get("S", "").split("#")[0] if pk else "?"
            invocation.units[f"WRU {operation} {kind}"] += units
            for ix in self._indexes:
                spent = ix.writes(before[table_key], after)
                invocation.wru += spent
                if spent:
                    invocation.units[f"WRU index {ix.name} ({operation} {kind})"] += spent
        reads = self._reads(operation, params, answer)
        invocation.rru += reads
        if reads:
            invocation.units[f"RRU {operation}"] += reads
        return answer

    def _reads(self, operation: str, params: Mapping[str, Any], answer: Mapping[str, Any]) -> float:
        consistent = 1.0 if params.get("ConsistentRead") else 0.5
        if operation == "GetItem":
            item = self._peek_item(params["TableName"], params["Key"])
            return _units(item_size(item), 4096) * consistent
        if operation == "BatchGetItem":
            units = 0.0
            for table, request in params["RequestItems"].items():
                weight = 1.0 if request.get("ConsistentRead") else 0.5
                for key in request["Keys"]:
                    item = self._peek_item(table, key)
                    units += _units(item_size(item), 4096) * weight
            return units
        if operation in ("Query", "Scan"):
            overhead = 100 if params.get("IndexName") else 0
            size = sum(item_size(i) + overhead for i in answer.get("Items", []))
            return max(1, _units(size, 4096)) * consistent
        return 0.0


def _written_keys(operation: str, params: Mapping[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """(table, key) of every item a write request touches (keys as sorted tuples)."""

    def key_of(request: Mapping[str, Any]) -> tuple[Any, ...]:
        raw = request.get("Key") or {k: request["Item"][k] for k in ("pk", "sk")}
        return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in raw.items()))

    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return [(params["TableName"], key_of(params))]
    if operation == "TransactWriteItems":
        found = []
        for entry in params["TransactItems"]:
            ((_, request),) = entry.items()
            found.append((request["TableName"], key_of(request)))
        return found
    if operation == "BatchWriteItem":
        found = []
        for table, requests in params["RequestItems"].items():
            for request in requests:
                ((_, body),) = request.items()
                found.append((table, key_of(body)))
        return found
    return []


def _factor(operation: str) -> int:
    return 2 if operation == "TransactWriteItems" else 1


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


class _CountingSink(io.TextIOBase):
    """Where the functions' log lines go: counted per invocation, then dropped."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def write(self, text: str) -> int:
        """Count the bytes for the invocation writing them."""
        invocation = self._meter.current
        if invocation is not None:
            invocation.log_bytes += len(text.encode())
            if self._meter.keep_lines:
                invocation.lines.append(text)
        return len(text)


# `_written_keys` keys are tuples of (name, json); `_peek_item` wants the low-level key back.
def _key_dict(key: tuple[Any, ...]) -> dict[str, Any]:
    return {name: json.loads(raw) for name, raw in key}


# --------------------------------------------------------------------------- the run


def start_cost_stack() -> LocalStack:
    """The local stack as `make run` runs it, on DynamoDB Local, without the event feed."""
    import logging

    from local.run import start_stack

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stack = start_stack(0, environ={}, dynamodb="dynamodb-local", events_feed=False)
    # ePay's postLink lands after the charge's own answer (delays of minutes have been seen);
    # the simulator would otherwise post it while the charge is still being authorized.
    stack.require_simulator().postlink_delay = POSTLINK_DELAY_SECONDS
    return stack


def post_charge(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST /charges with a fresh Idempotency-Key; (status, answer)."""
    connection.request(
        "POST",
        "/charges",
        body=body,
        headers={"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
    )
    answer = connection.getresponse()
    return answer.status, json.loads(answer.read() or b"{}")


def run(sizes: Sizes, card: str, detail: bool = False) -> tuple[Meter, int, Counter[str]]:
    """Warm up, then count `sizes.charges` approved charges and all they cause."""
    from local.template import load_template

    stack = start_cost_stack()
    try:
        template = load_template(ROOT / "template.yaml")
        indexes = table_indexes(template)
        body = json.loads(json.loads(EVENT_PATH.read_text())["body"])
        body["cardId"] = card
        payload = json.dumps(body).encode()
        port = urlsplit(stack.url).port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(sizes.warmup):
            post_charge(connection, payload)
        time.sleep(3.0)  # the warm-up's postLinks and stream batches land outside the count
        meter = Meter(stack, indexes)
        meter.keep_lines = detail
        meter.access_log_bytes = access_log_bytes(template)
        outcomes: Counter[str] = Counter()
        with meter.installed():
            for _ in range(sizes.charges):
                status, answer = post_charge(connection, payload)
                outcomes[f"{status}/{answer.get('status')}"] += 1
            time.sleep(6.0 + POSTLINK_DELAY_SECONDS)  # the last postLinks and stream batches
        connection.close()
        return meter, sizes.charges, outcomes
    finally:
        stack.stop()


# --------------------------------------------------------------------------- the bill


_READS = ("GetItem", "BatchGetItem", "Query", "Scan")
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def postlink_summary(meter: Meter) -> dict[str, Any]:
    """The postLinks answered without asking ePay, and the most DynamoDB reads and writes one
    of them made (the target: no ePay call, at most one read and one write)."""
    postlinks = [i for i in meter.invocations if i.function == "PostLinkFunction"]
    quiet = [i for i in postlinks if i.epay_calls == 0]

    def most(kinds: tuple[str, ...]) -> int:
        return max(
            (sum(n for op, n in i.aws.items() if op.split(".")[-1] in kinds) for i in quiet),
            default=0,
        )

    return {
        "deliveries": len(postlinks),
        "without_epay": len(quiet),
        "max_reads": most(_READS),
        "max_writes": most(_WRITES),
    }


@dataclass
class Bill:
    """Per-charge quantities and their cost per million charges."""

    quantities: dict[str, float]
    per_million: dict[str, float]
    by_function: dict[str, dict[str, float]]

    @property
    def total(self) -> float:
        """USD per million charges."""
        return sum(self.per_million.values())


def bill(meter: Meter, charges: int) -> Bill:
    """Turn the counts into the cost of one million charges."""
    q: dict[str, float] = defaultdict(float)
    by_function: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for inv in meter.invocations:
        # A stream invocation at load carries STREAM_BATCH records: its request and duration are
        # shared by them (its per-record work is counted in full).
        share = inv.records / STREAM_BATCH if inv.records and not inv.api else 1.0
        seconds = inv.seconds + inv.epay_calls * EPAY_LATENCY_MS / 1000
        row = by_function[inv.function]
        row["invocations"] += share
        row["seconds"] += seconds
        row["epay_calls"] += inv.epay_calls
        row["wru"] += inv.wru
        row["rru"] += inv.rru
        log_bytes = inv.log_bytes + PLATFORM_LOG_BYTES * share
        log_bytes += meter.access_log_bytes if inv.api else 0
        row["log_bytes"] += log_bytes
        q["apigw_request"] += 1 if inv.api else 0
        q["lambda_request"] += share
        q["lambda_gb_s"] += math.ceil(seconds * 1000) / 1000 * MEMORY_GB
        q["wru"] += inv.wru
        q["rru"] += inv.rru
        q["event"] += inv.events
        q["sqs_request"] += inv.sqs
        q["secret_call"] += inv.secrets
        q["log_gb"] += log_bytes / 1e9
    per_charge = {k: v / charges for k, v in q.items()}
    per_million = {k: v * PRICES[k][0] * 1e6 for k, v in per_charge.items()}
    for row in by_function.values():
        for name in row:
            row[name] /= charges
    return Bill(per_charge, per_million, {k: dict(v) for k, v in by_function.items()})


def report(
    result: Bill, charges: int, outcomes: Counter[str], meter: Meter, detail: bool = False
) -> None:
    """Print the bill, the price table and the assumptions."""
    print(f"cost of an approved charge: {charges} charges through the local API, all they cause")
    print(f"  answers {dict(outcomes)}")
    postlinks = postlink_summary(meter)
    print(
        f"  postLinks answered without asking ePay: {postlinks['without_epay']} of"
        f" {postlinks['deliveries']}, each with at most {postlinks['max_reads']} read and"
        f" {postlinks['max_writes']} write"
    )
    print()
    print(
        f"  {'function':<22}{'invocations':>12}{'seconds':>9}{'ePay':>6}{'WRU':>7}{'RRU':>7}"
        f"{'log KB':>8}"
    )
    for name, row in sorted(result.by_function.items()):
        print(
            f"  {name:<22}{row['invocations']:>12.2f}{row['seconds']:>9.3f}"
            f"{row['epay_calls']:>6.1f}{row['wru']:>7.1f}{row['rru']:>7.1f}"
            f"{row['log_bytes'] / 1000:>8.2f}"
        )
    print()
    print(f"  {'item':<16}{'per charge':>12}{'USD / 1M charges':>20}   price")
    for name in PRICES:
        amount = result.quantities.get(name, 0.0)
        usd = result.per_million.get(name, 0.0)
        price, what = PRICES[name]
        print(f"  {name:<16}{amount:>12.4g}{usd:>20.2f}   {price:<11.4g}{what}")
    verdict = "met" if result.total <= TARGET_PER_MILLION else "NOT met"
    target = f"target <= {TARGET_PER_MILLION:.2f} {verdict}"
    print(f"  {'total':<16}{'':>12}{result.total:>20.2f}   {target}")
    print()
    print(
        "  assumptions: 256 MB arm64 functions; each ePay call adds "
        f"{EPAY_LATENCY_MS:.0f} ms of billed wait (the simulator answers in a few ms); the"
    )
    print(
        f"  stream function at load gets {STREAM_BATCH} records an invocation (its BatchSize);"
        f" Lambda's own log lines {PLATFORM_LOG_BYTES} B an invocation; a merchant API request's"
    )
    print(
        f"  access log line {meter.access_log_bytes} B (template.yaml's format, filled); DynamoDB"
        " units"
    )
    print("  from item sizes: 1 WRU a KB (2 in a transaction), 1 RRU per 4 KB strongly")
    print("  consistent (half eventually), an index entry is its keys and projection + 100 B;")
    print("  CloudWatch metrics are EMF lines (priced as logs); the free tiers are ignored;")
    print(f"  ePay's postLink lands {POSTLINK_DELAY_SECONDS:.0f} s after the charge's answer.")
    if detail:
        for name in sorted({i.function for i in meter.invocations}):
            mine = [i for i in meter.invocations if i.function == name]
            units: dict[str, float] = defaultdict(float)
            calls: Counter[str] = Counter()
            for inv in mine:
                for op, spent in inv.units.items():
                    units[op] += spent
                calls.update(inv.aws)
            print(f"  {name}: requests per charge")
            for op, n in sorted(calls.items()):
                print(f"    {op:<50}{n / charges:>8.2f}")
            for op, spent in sorted(units.items()):
                print(f"    {op:<50}{spent / charges:>8.2f}")
            sample = next((i for i in mine if i.lines), None)
            if sample is not None:
                print(f"    log lines of one invocation ({sample.log_bytes} B):")
                for line in "".join(sample.lines).splitlines():
                    print(f"      {line[:160]}")
    if meter.unattributed:
        print(f"  requests outside any invocation (not billed): {dict(meter.unattributed)}")


def main() -> int:
    """Run the count and print the bill."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few charges (checks the script)")
    parser.add_argument("--charges", type=int, default=Sizes.charges)
    parser.add_argument("--card", default=CARD_AUTH)
    parser.add_argument("--detail", action="store_true", help="requests, units and log lines")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else Sizes(charges=args.charges)
    started = time.monotonic()
    meter, charges, outcomes = run(sizes, args.card, args.detail)
    result = bill(meter, charges)
    report(result, charges, outcomes, meter, args.detail)
    print(f"total run time {time.monotonic() - started:.0f} s")
    print(
        json.dumps(
            {
                "charges": charges,
                "usd_per_million": round(result.total, 2),
                "target": TARGET_PER_MILLION,
                "per_charge": {k: round(v, 4) for k, v in result.quantities.items()},
                "postlink": postlink_summary(meter),
                "usd_per_million_by_item": {k: round(v, 2) for k, v in result.per_million.items()},
                "by_function": {
                    f: {k: round(v, 4) for k, v in row.items()}
                    for f, row in result.by_function.items()
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
