"""Benchmark of POST /charges: warm overhead against a bare floor, calls per charge, peak RSS.

Run by `make bench` (PYTHONPATH=layers/payments:.). It prints numbers and never fails on them:
each target line only says "target met: yes/NO". The stack is the local one
(`local.run.start_stack`: DynamoDB Local, moto, the ePay simulator, the resources and the
functions' environment from template.yaml), all on 127.0.0.1; the handler runs in this process as
the local API would run it. The RSS figure comes from a child process (`--rss-child`) that only
imports the handler and charges against the servers this process started. Cold imports:
bench/cold_start_bench.py.

Top-level imports are stdlib only, so the RSS child is not charged for what the benchmark needs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from local.run import LocalStack

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = "functions/charges"
EVENT_PATH = ROOT / "events" / "charges" / "create-charge.json"

CARD_AUTH = "c0000000-0000-4000-8000-000000000001"  # AUTH, then our auto capture
CARD_CHARGE = "c0000000-0000-4000-8000-000000000002"  # single-stage: CHARGE at once
SUBPROCESS_TIMEOUT = 90

TARGET_WARM_RATIO = 1.3
TARGET_RSS_MB = 128.0
# counter (one write per block of charges: the most over the samples counts the charge that takes
# a block) + the create's three conditional puts (suffix, invoice, charge: a transaction cost twice
# the write units, docs/decisions.md) + one settling write; an auto capture after an AUTH records
# it with the capture claim in one write, then the capture (one ePay call however many race).
TARGET_DYNAMODB_WRITES = {"auto_capture": 6, "single_stage": 5}
TARGET_SECRETS_CALLS = 0

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass(frozen=True)
class Sizes:
    """How many charges each part makes."""

    warmup: int = 40
    rounds: int = 8
    per_round: int = 25  # rounds * per_round timed charges for the handler and for the floor
    call_samples: int = 5
    rss_charges: int = 50


SMOKE = Sizes(warmup=2, rounds=2, per_round=2, call_samples=1, rss_charges=3)


# --------------------------------------------------------------------------- small helpers


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    rank = max(1, -(-95 * len(ordered) // 100))
    return ordered[rank - 1]


def met(ok: bool) -> str:
    """A target line's verdict."""
    return "target met: yes" if ok else "target met: NO"


def load_handler() -> Handler:
    """The charges handler, loaded by path as the local API Gateway loads it."""
    from local.apigw import load_handler as load

    handler: Handler = load(FUNCTION_DIR, "app.lambda_handler", ROOT)
    return handler


def charge_once(handler: Handler, event: dict[str, Any]) -> dict[str, Any]:
    """One invocation with a fresh Lambda context (the template's 28 s timeout)."""
    from local.apigw import LambdaContext

    return handler(event, LambdaContext("charges", 256, 28.0))


class EventFactory:
    """The canonical POST /charges event with a fresh Idempotency-Key (and a chosen card)."""

    def __init__(self) -> None:
        self._base: dict[str, Any] = json.loads(EVENT_PATH.read_text())
        self._bodies: dict[str, str] = {}

    def make(self, card: str) -> dict[str, Any]:
        """An event for ``card`` that no earlier charge used the key of."""
        if card not in self._bodies:
            body = json.loads(self._base["body"])
            body["cardId"] = card
            self._bodies[card] = json.dumps(body)
        event = copy.deepcopy(self._base)
        key = f"bench-{uuid.uuid4().hex}"
        event["body"] = self._bodies[card]
        event["headers"]["idempotency-key"] = key  # an HTTP API event: lower-case names
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


def outcome(result: dict[str, Any]) -> str:
    """ "<HTTP status>/<charge status>" of a proxy response."""
    try:
        status = json.loads(result.get("body") or "{}").get("status")
    except ValueError:
        status = None
    return f"{result.get('statusCode')}/{status}"


def start_bench_stack() -> LocalStack:
    """The local stack on DynamoDB Local, quiet: no postLink deliveries, no stream polling."""
    from local.run import start_stack

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    # environ={}: the bench always measures the local servers, whatever the shell points at.
    stack = start_stack(
        0, environ={}, dynamodb="dynamodb-local", charge_events=False, events_feed=False
    )
    # postLinks go nowhere: their delivery threads would only add noise to the timings.
    stack.require_simulator().postlink_drop = True
    return stack


# --------------------------------------------------------------------------- 1. the floor


class Floor:
    """The same network calls as one auto-capture charge, and nothing else: one urllib3 pool,
    one boto3 DynamoDB client (the bootstrap's botocore Config), prebuilt low-level items."""

    def __init__(self, stack: LocalStack) -> None:
        import boto3
        import urllib3

        from local.aws import LOCAL_EPAY_CREDENTIALS
        from payments.charges.invoices import BLOCK
        from payments.clients import AWS_CONFIG

        self._ddb = boto3.session.Session().client("dynamodb", config=AWS_CONFIG)
        self._http = urllib3.PoolManager(maxsize=10, retries=False)
        self._timeout = urllib3.Timeout(connect=3.0, read=10.0)
        self._table = stack.env["PAYMENTS_TABLE"]
        self._oauth = stack.epay_oauth_url
        self._api = stack.epay_api_url.rstrip("/")
        self._links = {
            "postLink": f"{stack.url}/epay/postlink",
            "failurePostLink": f"{stack.url}/epay/postlink/failure",
        }
        self._creds: dict[str, str] = json.loads(LOCAL_EPAY_CREDENTIALS)
        self._body = json.loads(json.loads(EVENT_PATH.read_text())["body"])
        self._terminal_token = self._token({})
        self._block = BLOCK
        self._slots: list[int] = []  # invoice slots taken, not used yet
        self.failures = 0

    def charge(self) -> None:
        """Reserve, write PROCESSING, token, auth, claim the capture (AUTHORIZED), capture, write
        CAPTURED: the same calls the service must make."""
        key = f"floor-{uuid.uuid4().hex}"
        invoice = self._reserve(key)
        charge = self._write_processing(key, invoice)
        result = self._auth(invoice)
        claimed = self._write_step(charge, result, "PROCESSING", "AUTHORIZED", "")
        self._capture(result)
        self._write_step(claimed, result, "AUTHORIZED", "CAPTURED", "auto capture")

    def _reserve(self, key: str) -> str:
        # The key's charge (its id derives from the key), a key of the kind used before and the
        # card (its check: a removed card, or another account's, is refused before any write).
        self._ddb.batch_get_item(
            RequestItems={
                self._table: {
                    "Keys": [
                        {"pk": {"S": f"CHARGE#{self._charge_id(key)}"}, "sk": {"S": "CHARGE"}},
                        {"pk": {"S": f"IDEMPOTENCY#{key}"}, "sk": {"S": "IDEMPOTENCY"}},
                        {"pk": {"S": f"CARD#{self._body['cardId']}"}, "sk": {"S": "CARD"}},
                    ],
                    "ConsistentRead": True,
                }
            }
        )
        # The allocator's counter step, one per block of slots as the service's allocator
        # takes them (a ring of its own: the floor's invoice ids and suffixes never meet the
        # service's).
        if not self._slots:
            counter = self._ddb.update_item(
                TableName=self._table,
                Key={"pk": {"S": "INVOICE_RING#floor#00"}, "sk": {"S": "RING"}},
                UpdateExpression="ADD n :count SET m = if_not_exists(m, :none)",
                ConditionExpression="attribute_not_exists(fullUntil) OR fullUntil <= :now",
                ExpressionAttributeValues={
                    ":count": {"N": str(self._block)},
                    ":none": {"M": {}},
                    ":now": {"N": str(int(time.time()))},
                },
                ReturnValues="ALL_NEW",
            )
            last = int(counter["Attributes"]["n"]["N"])
            self._slots = list(range(last - self._block + 1, last + 1))
        return "99" + str(self._slots.pop(0)).zfill(7)

    def _write_processing(self, key: str, invoice: str) -> dict[str, Any]:
        body, charge_id = self._body, self._charge_id(key)
        now, epoch = datetime.now(UTC).isoformat(), int(time.time())
        pk = {"S": f"CHARGE#{charge_id}"}
        charge = {
            "pk": pk,
            "sk": {"S": "CHARGE"},
            "id": {"S": charge_id},
            "invoiceId": {"S": invoice},
            "terminalId": {"S": self._creds["terminal_id"]},
            "status": {"S": "PROCESSING"},
            "version": {"N": "1"},
            "amount": {"N": "1500.00"},
            "capture": {"S": "auto"},
            "recurrent": {"BOOL": False},
            "idempotencyKey": {"S": key},
            "requestHash": {"S": "0" * 64},
            "secretHashDigest": {"S": "1" * 64},
            "createdAt": {"S": now},
            "updatedAt": {"S": now},
            "needsCheck": {"BOOL": False},
            "epay": {"M": {}},
            "history": {
                "L": [{"M": {"to": {"S": "PROCESSING"}, "at": {"S": now}, "source": {"S": "api"}}}]
            },
            **{
                name: {"S": body[field]}
                for name, field in (
                    ("currency", "currency"),
                    ("accountId", "accountId"),
                    ("cardId", "cardId"),
                    ("description", "description"),
                    ("language", "language"),
                    ("name", "name"),
                    ("email", "email"),
                    ("phone", "phone"),
                    ("backLink", "backLink"),
                    ("failureBackLink", "failureBackLink"),
                )
            },
        }
        suffix = {
            "pk": {"S": f"INVOICE_SUFFIX#floor#{invoice[-6:]}"},
            "sk": {"S": "INVOICE_SUFFIX"},
            "invoiceId": {"S": invoice},
            "chargeId": {"S": charge_id},
            "expiresAt": {"N": str(epoch + 400 * 86400)},
        }
        # Reservations first, the charge last: one conditional put each.
        self._ddb.put_item(
            TableName=self._table,
            Item=suffix,
            ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now",
            ExpressionAttributeValues={":now": {"N": str(epoch)}},
        )
        self._ddb.put_item(
            **self._put_new(
                {
                    "pk": {"S": f"INVOICE#{invoice}"},
                    "sk": {"S": "INVOICE"},
                    "chargeId": {"S": charge_id},
                }
            )["Put"]
        )
        self._ddb.put_item(**self._put_new(charge)["Put"])
        return charge

    @staticmethod
    def _charge_id(key: str) -> str:
        return "ch_" + hashlib.sha256(b"charge\x00" + key.encode()).hexdigest()[:32]

    def _put_new(self, item: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

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

    def _post(self, path: str, token: str, payload: dict[str, Any] | None) -> Any:
        return self._http.request(
            "POST",
            f"{self._api}{path}",
            body=b"" if payload is None else json.dumps(payload).encode(),
            headers={
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token}",
            },
            timeout=self._timeout,
        )

    def _auth(self, invoice: str) -> dict[str, Any]:
        body = self._body
        token = self._token(
            {"invoiceID": invoice, "amount": "1500.00", "currency": "KZT", **self._links}
            | {"secret_hash": secrets.token_urlsafe(32)}
        )
        auth = {
            "amount": 1500.00,
            "currency": "KZT",
            "terminalId": self._creds["terminal_id"],
            "invoiceId": invoice,
            "paymentType": "cardId",
            "recurrent": False,
            "cardId": {"id": body["cardId"]},
            **self._links,
            **{
                field: body[field]
                for field in (
                    "description",
                    "accountId",
                    "language",
                    "name",
                    "email",
                    "phone",
                    "backLink",
                    "failureBackLink",
                )
            },
        }
        answer = self._post("/payments/cards/auth", token, auth)
        result: dict[str, Any] = json.loads(answer.data)
        if answer.status != 200 or result.get("status") != "AUTH":
            self.failures += 1
        return result

    def _capture(self, result: dict[str, Any]) -> None:
        transaction = result.get("id", "missing")
        captured = self._post(f"/operation/{transaction}/charge", self._terminal_token, None)
        if captured.status != 200:
            self.failures += 1

    def _write_step(
        self, charge: dict[str, Any], result: dict[str, Any], before: str, after: str, detail: str
    ) -> dict[str, Any]:
        """One conditional write of the charge, its history grown by the step (the claim, then
        the capture)."""
        version = int(charge["version"]["N"])
        moved = {
            **charge,
            "status": {"S": after},
            "version": {"N": str(version + 1)},
            "updatedAt": {"S": datetime.now(UTC).isoformat()},
            "epay": {
                "M": {
                    name: {"S": str(result.get(field))}
                    for name, field in (
                        ("transactionId", "id"),
                        ("reference", "reference"),
                        ("approvalCode", "approvalCode"),
                        ("cardMask", "cardMask"),
                    )
                }
            },
        }
        if after == "CAPTURED":
            moved["capturedAmount"] = {"N": "1500.00"}
        entry = {"from": {"S": before}, "to": {"S": after}, "at": moved["updatedAt"]}
        entry["source"] = {"S": "api"}
        if detail:
            entry["detail"] = {"S": detail}
        moved["history"] = {"L": [*charge["history"]["L"], {"M": entry}]}
        self._ddb.put_item(
            TableName=self._table,
            Item=moved,
            ConditionExpression="#s = :status AND #v = :version",
            ExpressionAttributeNames={"#s": "status", "#v": "version"},
            ExpressionAttributeValues={":status": {"S": before}, ":version": {"N": str(version)}},
        )
        return moved


# --------------------------------------------------------------------------- 2. warm timings


@dataclass
class Timings:
    """Wall and client CPU time (calling thread only) of each timed charge."""

    wall: list[float]
    cpu: list[float]

    def add(self, run: Callable[[], Any]) -> Any:
        """Time one call; return its result."""
        cpu, started = time.thread_time(), time.perf_counter()
        result = run()
        self.wall.append(time.perf_counter() - started)
        self.cpu.append(time.thread_time() - cpu)
        return result


def bench_warm(handler: Handler, floor: Floor, sink: TextIO, sizes: Sizes) -> dict[str, Any]:
    """Handler and floor in alternating rounds, after a warm-up of both."""
    events = EventFactory()
    outcomes: Counter[str] = Counter()
    with silenced(sink):
        for _ in range(sizes.warmup):
            charge_once(handler, events.make(CARD_AUTH))
            floor.charge()
    # CPU of the calling thread only: the client side (handler or floor, boto3, urllib3), not
    # the simulator's threads nor DynamoDB Local's process.
    ours, bare = Timings([], []), Timings([], [])

    def run_handler() -> None:
        with silenced(sink):
            for _ in range(sizes.per_round):
                event = events.make(CARD_AUTH)
                outcomes[outcome(ours.add(functools.partial(charge_once, handler, event)))] += 1

    def run_floor() -> None:
        for _ in range(sizes.per_round):
            bare.add(floor.charge)

    for round_no in range(sizes.rounds):  # alternate which goes first, so drift hits both alike
        first, second = (run_handler, run_floor) if round_no % 2 == 0 else (run_floor, run_handler)
        first()
        second()
    return warm_summary(ours, bare, outcomes, floor.failures)


def warm_summary(
    ours: Timings, bare: Timings, outcomes: Counter[str], floor_failures: int
) -> dict[str, Any]:
    """Medians, p95s and ratios of the handler against the floor (milliseconds)."""
    handler_median = statistics.median(ours.wall) * 1000
    floor_median = statistics.median(bare.wall) * 1000
    handler_p95, floor_p95 = p95(ours.wall) * 1000, p95(bare.wall) * 1000
    handler_cpu = statistics.median(ours.cpu) * 1000
    floor_cpu = statistics.median(bare.cpu) * 1000
    return {
        "n": len(ours.wall),
        "handler_median_ms": handler_median,
        "handler_p95_ms": handler_p95,
        "floor_median_ms": floor_median,
        "floor_p95_ms": floor_p95,
        "handler_cpu_median_ms": handler_cpu,
        "floor_cpu_median_ms": floor_cpu,
        "handler_outcomes": dict(outcomes),
        "floor_failures": floor_failures,
        "ratio_median": handler_median / floor_median,
        "ratio_p95": handler_p95 / floor_p95,
        "overhead_median_ms": handler_median - floor_median,
        "ratio_cpu": handler_cpu / floor_cpu,
    }


# --------------------------------------------------------------------------- 3. calls per charge

WRITE_OPERATIONS = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
)


@contextlib.contextmanager
def aws_requests() -> Iterator[Counter[str]]:
    """Count the AWS requests this process sends, by X-Amz-Target (``DynamoDB_20120810.GetItem``).

    Counted where botocore sends them (every HTTP attempt, retries included), so no handle on
    the clients the bootstrap builds is needed.
    """
    from unittest import mock

    from botocore.httpsession import URLLib3Session

    counts: Counter[str] = Counter()
    send = URLLib3Session.send

    def counted(session: Any, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target") or b"unknown.unknown"
        counts[target.decode() if isinstance(target, bytes) else str(target)] += 1
        return send(session, request)

    with mock.patch.object(URLLib3Session, "send", counted):
        yield counts


def calls_of_one_charge(
    handler: Handler, stack: LocalStack, event: dict[str, Any]
) -> dict[str, Any]:
    """ePay (the simulator's journal) and AWS requests (on the wire) of one charge."""
    journal = stack.require_simulator().journal
    journal_before = len(journal)
    with aws_requests() as sent:
        answer = charge_once(handler, event)
    epay_ops = Counter(entry.op for entry in journal[journal_before:])
    dynamodb = Counter(
        {t.split(".", 1)[1]: n for t, n in sent.items() if t.startswith("DynamoDB_")}
    )
    return {
        "outcome": outcome(answer),
        "epay": sum(epay_ops.values()),
        "epay_ops": dict(epay_ops),
        "dynamodb_writes": sum(n for op, n in dynamodb.items() if op in WRITE_OPERATIONS),
        "dynamodb_reads": sum(n for op, n in dynamodb.items() if op not in WRITE_OPERATIONS),
        "dynamodb_ops": dict(dynamodb),
        "secretsmanager": sum(n for t, n in sent.items() if t.startswith("secretsmanager.")),
    }


def bench_calls(handler: Handler, stack: LocalStack, sink: TextIO, samples: int) -> dict[str, Any]:
    """Calls per warm charge for both test cards: the most over ``samples`` charges each."""
    events = EventFactory()
    results: dict[str, Any] = {}
    for label, card in (("auto_capture", CARD_AUTH), ("single_stage", CARD_CHARGE)):
        with silenced(sink):  # one uncounted charge first, so this card's path is warm too
            charge_once(handler, events.make(card))
            taken = [calls_of_one_charge(handler, stack, events.make(card)) for _ in range(samples)]
        summary: dict[str, Any] = {}
        for name in ("epay", "dynamodb_writes", "dynamodb_reads", "secretsmanager"):
            summary[name] = max(s[name] for s in taken)
            summary[f"{name}_min"] = min(s[name] for s in taken)
        summary["epay_ops"] = taken[-1]["epay_ops"]
        summary["dynamodb_ops"] = taken[-1]["dynamodb_ops"]
        summary["outcomes"] = dict(Counter(s["outcome"] for s in taken))
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
    report = {
        "source": source,
        "interpreter_mb": start,
        "after_import_mb": after_import,
        "after_first_charge_mb": after_first,
        "peak_mb": peak_rss_mb()[0],
        "ru_maxrss_mb": maxrss_mb(),
        "charges": charges,
        "outcomes": dict(outcomes),
    }
    print(json.dumps(report), file=sys.__stdout__, flush=True)


def bench_rss(stack: LocalStack, charges: int) -> dict[str, Any]:
    """Run the RSS child with the functions' environment; its report."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(charges)],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env={**os.environ, **stack.env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"RSS child failed ({done.returncode}): {done.stderr[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- report


def row(name: str, value: str, target: str = "") -> None:
    """One line of the table."""
    print(f"{name:<46}{value:>22}   {target}")


def report_warm(warm: dict[str, Any], sizes: Sizes) -> None:
    """Section 1: warm latency against the floor."""
    print(
        f"1. warm POST /charges, card ...0001 auto capture, n={warm['n']} each "
        f"(after {sizes.warmup} warm-up), interleaved in {sizes.rounds} rounds"
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


def report_calls(calls: dict[str, Any], sizes: Sizes) -> None:
    """Section 2: calls per warm charge."""
    print(f"2. calls per warm charge (max over {sizes.call_samples} charges; AWS requests counted")
    print("   where botocore sends them, ePay calls from the simulator's journal)")
    for label, path, epay_target in (
        ("auto capture ...0001", "auto_capture", 3),
        ("single-stage ...0002", "single_stage", 2),
    ):
        data = calls[path]
        print(f"  {label}: outcomes {json.dumps(data['outcomes'])}")
        row(
            "    ePay calls",
            f"{data['epay']}  {json.dumps(data['epay_ops'])}",
            f"== {epay_target}  {met(data['epay'] == data['epay_min'] == epay_target)}",
        )
        writes = data["dynamodb_writes"]
        row(
            "    DynamoDB writes",
            str(writes),
            f"<= {TARGET_DYNAMODB_WRITES[path]}  {met(writes <= TARGET_DYNAMODB_WRITES[path])}",
        )
        row("    DynamoDB reads", str(data["dynamodb_reads"]))
        print(f"    DynamoDB requests: {json.dumps(data['dynamodb_ops'])}")
        secrets_calls = data["secretsmanager"]
        row(
            "    Secrets Manager calls",
            str(secrets_calls),
            f"== {TARGET_SECRETS_CALLS}  {met(secrets_calls == TARGET_SECRETS_CALLS)}",
        )


def report_rss(rss: dict[str, Any], parent_rss: float) -> None:
    """Section 3: the handler's peak RSS in a child process."""
    print(
        f"3. peak RSS ({rss['source']}), handler alone in a child process, {rss['charges']} charges"
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
    row("  (this process, with the local stack)", f"{parent_rss:.1f} MB")


def report(
    sizes: Sizes, warm: dict[str, Any], calls: dict[str, Any], rss: dict[str, Any], elapsed: float
) -> None:
    """Print the table, then one JSON line with the same numbers."""
    parent_rss = peak_rss_mb()[0]
    print()
    print("POST /charges benchmark (functions/charges/app.py)")
    print("=" * 100)
    print(f"{'measure':<46}{'value':>22}   target")
    print("-" * 100)
    report_warm(warm, sizes)
    print()
    report_calls(calls, sizes)
    print()
    report_rss(rss, parent_rss)
    print("-" * 100)
    print(f"total run time {elapsed:.0f} s")
    summary = {
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
    print(json.dumps(summary, sort_keys=True, default=str))


def main() -> int:
    """Start the local stack, measure, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few charges: checks it runs")
    parser.add_argument("--rss-child", type=int, metavar="CHARGES", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return 0

    sizes = SMOKE if args.smoke else Sizes()
    started = time.perf_counter()
    print("starting the local stack (DynamoDB Local, moto, ePay simulator) ...", flush=True)
    with start_bench_stack() as stack, open(os.devnull, "w") as sink:
        handler = load_handler()
        print("warm charges ...", flush=True)
        warm = bench_warm(handler, Floor(stack), sink, sizes)
        print("calls per charge ...", flush=True)
        calls = bench_calls(handler, stack, sink, sizes.call_samples)
        print("RSS child ...", flush=True)
        rss = bench_rss(stack, sizes.rss_charges)
    report(sizes, warm, calls, rss, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
