"""Reconciler throughput on the local stack (a benchmark, not a test; prints numbers only).

Run by `make bench-reconciler` (PYTHONPATH=layers/payments:.). It starts the local stack
(`local.run.start_stack`: DynamoDB Local, moto's SQS FIFO reconcile queue, the ePay simulator, the
functions' environment from template.yaml, RECONCILER_THREADS among it), seeds UNKNOWN charges due
for their check straight into the table, each with the simulator's ledger holding its invoice as
CHARGE (money taken), and times the reconciler as the bootstrap wires it:

1. one check at a time (`Reconciler.check`, in this thread): wall time and client CPU per check,
   and the AWS requests of each (counted where botocore sends them: `URLLib3Session.send`);
2. one shard's run (`Reconciler.run_shard`, a fan-out unit) with the configured threads, and with
   one thread for comparison: charges settled per second, requests per check;
3. every shard fanned out at once through the real handler: the tick enqueues one unit per due
   shard and the local event source (`local.workers.Reconciliations`) runs the units side by
   side, all in this one process.

From the per-shard rate it projects the time to drain 100,000 due charges with the 8 shards in
parallel invocations, against the schedule's period, printing its assumptions.

    PYTHONPATH=layers/payments:. .venv/bin/python bench/reconciler_bench.py [--smoke] [--charges N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import secrets
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import boto3

from local.epay_sim import TEST_TERMINAL_ID, EpaySimulator, LedgerEntry
from local.run import APPROVED_TEST_CARD_ID, LocalStack, start_stack
from local.template import load_template, parameter_defaults
from local.workers import Reconciliations
from payments import bootstrap
from payments.aws.charge_items import charge_to_item, due_shard
from payments.aws.dynamo import to_attributes
from payments.charges.model import DUE_SHARDS, CaptureMode, Charge, ChargeStatus
from payments.charges.reconciler import Reconciler
from payments.shared.deadline import Deadline

ROOT = Path(__file__).resolve().parents[1]
TARGET = 100_000
AMOUNT = Decimal("1500.00")
BATCH = 25  # BatchWriteItem's limit
SINGLE_SHARD = 1  # the shard of the per-shard runs (any one will do)
ONE_THREAD_SHARD = 2
SPREAD_SHARDS = range(3, DUE_SHARDS)  # phase 1 charges, out of the way of the shard runs
# Lambda gives one vCPU at 1,769 MB, CPU in proportion to memory below it.
MB_PER_VCPU = 1769


@dataclass(frozen=True)
class Sizes:
    """How many charges each part checks."""

    single: int = 150  # checked one at a time
    shard: int = 1200  # one shard's run with the configured threads
    shard_one_thread: int = 200  # one shard's run with one thread
    fanned_per_shard: int = 250  # every shard at once, through the handler


SMOKE = Sizes(single=5, shard=24, shard_one_thread=8, fanned_per_shard=4)


def sizes_for(charges: int) -> Sizes:
    """`--charges N`: N charges fanned out across every shard, the others in proportion."""
    per_shard = max(1, charges // DUE_SHARDS)
    return Sizes(
        single=min(300, max(5, charges // 20)),
        shard=max(10, charges // 3),
        shard_one_thread=min(400, max(5, charges // 20)),
        fanned_per_shard=per_shard,
    )


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(1, -(-95 * len(ordered) // 100)) - 1]


def met(ok: bool) -> str:
    """A target line's verdict."""
    return "met" if ok else "NOT met"


# --------------------------------------------------------------------------- seeding


class Seeder:
    """Due UNKNOWN charges in chosen shards, each with the simulator's ledger holding its
    invoice as CHARGE (as if the auth's answer was lost after ePay took the money)."""

    def __init__(self, stack: LocalStack) -> None:
        self._dynamodb = boto3.client("dynamodb")  # pointed at the stack by its environment
        self._table = stack.env["PAYMENTS_TABLE"]
        self._simulator: EpaySimulator = stack.require_simulator()
        self._invoices = 0
        self._now = datetime.now(UTC)
        # The simulator's ledger keeps lookups beside it: entries go in through its recorder.
        self._record: Callable[[LedgerEntry], object] = self._simulator.record

    def seed(self, shard: int, count: int) -> list[str]:
        """`count` charges due now in `shard`; their ids, oldest check first."""
        ids: list[str] = []
        batch: list[dict[str, Any]] = []
        while len(ids) < count:
            charge_id = f"ch_{secrets.token_hex(16)}"
            if due_shard(charge_id) != f"DUE#{shard}":
                continue
            charge = self._charge(charge_id, len(ids))
            batch.append({"PutRequest": {"Item": to_attributes(charge_to_item(charge))}})
            self._record(
                LedgerEntry(
                    invoice_id=charge.invoice_id,
                    transaction_id=f"tx-{charge.invoice_id}",
                    status_name="CHARGE",
                    amount=AMOUNT,
                    currency="KZT",
                    terminal=TEST_TERMINAL_ID,
                    card_id=APPROVED_TEST_CARD_ID,
                    account_id="bench",
                    reference=f"r{charge.invoice_id}",
                    approval_code="123456",
                    card_mask="440043******0178",
                    captured_amount=AMOUNT,
                    created_at=time.time(),
                )
            )
            ids.append(charge_id)
            if len(batch) == BATCH:
                self._write(batch)
                batch = []
        if batch:
            self._write(batch)
        return ids

    def _charge(self, charge_id: str, position: int) -> Charge:
        self._invoices += 1
        created = self._now - timedelta(minutes=10)
        return Charge(
            id=charge_id,
            invoice_id=f"8{self._invoices:08d}",
            status=ChargeStatus.UNKNOWN,
            amount=AMOUNT,
            currency="KZT",
            account_id="bench",
            card_id=APPROVED_TEST_CARD_ID,
            description="reconciler bench",
            capture=CaptureMode.AUTO,
            recurrent=False,
            language="rus",
            idempotency_key=f"bench-{charge_id}",
            request_hash="0" * 64,
            secret_hash_digest="1" * 64,
            created_at=created,
            updated_at=created,
            # Due a few minutes ago, oldest first in the order seeded.
            next_check_at=self._now - timedelta(minutes=5) + timedelta(milliseconds=position),
            terminal_id=TEST_TERMINAL_ID,
        )

    def _write(self, batch: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self._table: batch}
        while pending:
            answer = self._dynamodb.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}

    def statuses(self, ids: list[str]) -> Counter[str]:
        """The charges' statuses as stored now (strongly consistent, 100 a request)."""
        found: Counter[str] = Counter()
        for start in range(0, len(ids), 100):
            keys = [
                {"pk": {"S": f"CHARGE#{i}"}, "sk": {"S": "CHARGE"}}
                for i in ids[start : start + 100]
            ]
            request = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self._dynamodb.batch_get_item(RequestItems=request)
                for item in answer["Responses"].get(self._table, []):
                    found[item["status"]["S"]] += 1
                request = answer.get("UnprocessedKeys") or {}
        return found


# --------------------------------------------------------------------------- counting


@contextlib.contextmanager
def aws_requests() -> Iterator[Counter[str]]:
    """DynamoDB and SQS requests this process sends, by operation (a GetItem also by its key's
    kind, "GetItem CHARGE"), counted where botocore sends them; a retry (botocore's
    `amz-sdk-request: attempt=N`, N > 1) is counted apart, as "retries"."""
    from unittest import mock

    from botocore.httpsession import URLLib3Session

    counts: Counter[str] = Counter()
    send = URLLib3Session.send

    def counted(session: Any, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target") or b""
        name = target.decode() if isinstance(target, bytes) else str(target)
        raw = request.headers.get("amz-sdk-request") or "attempt=1"
        attempt = re.search(r"attempt=(\d+)", raw.decode() if isinstance(raw, bytes) else raw)
        if attempt is not None and attempt.group(1) != "1":
            counts["retries"] += 1
        elif name.startswith("DynamoDB_"):
            operation = name.split(".", 1)[1]
            counts[operation] += 1
            if operation == "GetItem":
                key = json.loads(request.body)["Key"]["pk"]["S"]
                counts[f"GetItem {key.split('#', 1)[0]}"] += 1
        elif name.startswith("AmazonSQS."):
            counts[f"SQS {name.split('.', 1)[1]}"] += 1
        return send(session, request)

    with mock.patch.object(URLLib3Session, "send", counted):
        yield counts


def charge_reads(counts: Counter[str]) -> int:
    """Reads that fetch a charge item: GetItem of CHARGE#, BatchGetItem (none expected)."""
    return counts["GetItem CHARGE"] + counts["BatchGetItem"]


@contextlib.contextmanager
def silenced(sink: TextIO) -> Iterator[None]:
    """The handlers' JSON logs and EMF blobs to `sink` (they are still formatted and written)."""
    from payments.observability import logger

    handler = logger.registered_handler
    previous = handler.setStream(sink)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the phases


def one_at_a_time(reconciler: Reconciler, ids: list[str], sim: EpaySimulator) -> dict[str, Any]:
    """Phase 1: each check alone, in this thread."""
    wall, cpu, reads, requests = [], [], [], Counter[str]()
    journal_before = len(sim.journal)
    outcomes: Counter[str] = Counter()
    for charge_id in ids:
        with aws_requests() as sent:
            started_cpu, started = time.thread_time(), time.perf_counter()
            result = reconciler.check(charge_id, Deadline.after(30), forced=False)
            wall.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
        outcomes[result.outcome.value] += 1
        reads.append(charge_reads(sent))
        requests.update(sent)
    epay = Counter(entry.op for entry in sim.journal[journal_before:])
    return {
        "checks": len(ids),
        "median_ms": statistics.median(wall) * 1000,
        "p95_ms": p95(wall) * 1000,
        "cpu_median_ms": statistics.median(cpu) * 1000,
        "charge_reads_max": max(reads),
        "charge_reads_per_check": sum(reads) / len(ids),
        "dynamodb_per_check": {k: v / len(ids) for k, v in sorted(requests.items())},
        "epay_per_check": {k: v / len(ids) for k, v in sorted(epay.items())},
        "outcomes": dict(outcomes),
    }


def shard_run(reconciler: Reconciler, shard: int, ids: list[str]) -> dict[str, Any]:
    """Phase 2: one shard's run (a fan-out unit) over `ids`, all due in `shard`."""
    with aws_requests() as sent:
        started = time.perf_counter()
        report = reconciler.run_shard(shard, Deadline.after(900))
        elapsed = time.perf_counter() - started
    checked = max(1, report.checked)
    return {
        "charges": len(ids),
        "checked": report.checked,
        "settled": report.settled,
        "seconds": elapsed,
        "rate": report.checked / elapsed,
        "charge_reads_per_check": charge_reads(sent) / checked,
        "queries_per_check": sent["Query"] / checked,
        "dynamodb_per_check": {k: v / checked for k, v in sorted(sent.items())},
    }


def fanned_out(stack: LocalStack, total: int) -> dict[str, Any]:
    """Phase 3: the handler's tick, then every unit at once (a thread per shard's group), until
    nothing is left on the queue."""
    template = load_template(ROOT / "template.yaml")
    sqs = boto3.client("sqs")  # pointed at the stack by its environment
    local = Reconciliations(template, ROOT, sqs, stack.resource_names, period=3600)
    with aws_requests() as sent:
        started = time.perf_counter()
        tick = local.tick_once()
        units = 0
        while received := local.deliver_once(wait_seconds=0):
            units += received
        elapsed = time.perf_counter() - started
    return {
        "charges": total,
        "enqueued": tick.get("enqueued"),
        "units_run": units,
        "seconds": elapsed,
        "rate": total / elapsed,
        "charge_reads_per_check": charge_reads(sent) / max(1, total),
        "retries": sent["retries"],
        "sqs": {k: v for k, v in sent.items() if k.startswith("SQS")},
    }


# --------------------------------------------------------------------------- projection


def deployed() -> tuple[int, int]:
    """ReconcileSchedule's default (`rate(N minutes)`) in seconds, and the function's memory."""
    template = load_template(ROOT / "template.yaml")
    rate = str(parameter_defaults(template)["ReconcileSchedule"])
    found = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours)\)", rate)
    if found is None:
        raise SystemExit(f"cannot read ReconcileSchedule {rate!r}")
    period = int(found.group(1)) * (60 if found.group(2).startswith("minute") else 3600)
    memory = int(template["Resources"]["ReconcilerFunction"]["Properties"]["MemorySize"])
    return period, memory


def projection(one: dict[str, Any], shard: dict[str, Any], threads: int) -> dict[str, Any]:
    """Time to drain TARGET due charges, every shard in its own invocation: (a) at the rate one
    shard's run reached here, (b) at what an invocation sustains by itself, the lower of its
    threads over the time of one check and its CPU over the CPU of one check; and the threads a
    shard needs when a check takes longer (a real ePay)."""
    period, memory = deployed()
    check_s, cpu_s = one["median_ms"] / 1000, one["cpu_median_ms"] / 1000
    vcpu = min(memory, MB_PER_VCPU) / MB_PER_VCPU  # one process: the GIL uses one vCPU at most
    by_latency, by_cpu = threads / check_s, vcpu / cpu_s if cpu_s else math.inf
    invocation = min(by_latency, by_cpu)
    needed_per_shard = TARGET / period / DUE_SHARDS
    return {
        "shards": DUE_SHARDS,
        "threads": threads,
        "period": period,
        "memory_mb": memory,
        "vcpu": vcpu,
        "measured_rate": shard["rate"] * DUE_SHARDS,
        "measured_seconds": TARGET / (shard["rate"] * DUE_SHARDS),
        "invocation_by_latency": by_latency,
        "invocation_by_cpu": by_cpu,
        "rate": invocation * DUE_SHARDS,
        "seconds": TARGET / (invocation * DUE_SHARDS),
        "met": TARGET / (invocation * DUE_SHARDS) <= period,
        "needed_per_shard_rate": needed_per_shard,
        # Little's law: checks in flight = rate x time of one check.
        "threads_needed_at_ms": {
            ms: math.ceil(needed_per_shard * ms / 1000) for ms in (50, 100, 200, 400)
        },
    }


# --------------------------------------------------------------------------- report


def row(name: str, value: str, note: str = "") -> None:
    """One line of the table."""
    print(f"{name:<44}{value:>24}   {note}")


def report(results: dict[str, Any], elapsed: float) -> None:
    """The table, then one JSON line with the same numbers."""
    one, shard, single_thread = results["one"], results["shard"], results["shard_one_thread"]
    fan, plan = results["fanned"], results["projection"]
    print()
    print("Reconciler benchmark (local stack: DynamoDB Local, moto SQS FIFO, ePay simulator)")
    print(
        f"machine: {results['cores']} cores, load average {results['load']:.1f} at the end"
        " (other work on the machine slows every figure)"
    )
    print("=" * 100)
    print(f"1. one check at a time, in this thread ({one['checks']} due UNKNOWN charges)")
    row("  time per check median / p95", f"{one['median_ms']:.2f} / {one['p95_ms']:.2f} ms")
    row("  client CPU per check (median)", f"{one['cpu_median_ms']:.2f} ms", "thread_time")
    row("  charge reads per check", f"{one['charge_reads_per_check']:.2f}", "GetItem CHARGE#")
    print(f"  DynamoDB requests per check: {json.dumps(one['dynamodb_per_check'])}")
    print(f"  ePay calls per check: {json.dumps(one['epay_per_check'])}")
    print(f"  outcomes: {json.dumps(one['outcomes'])}")
    print(f"2. one shard's run (a fan-out unit), {shard['charges']} due charges in one shard")
    row(
        f"  per-shard rate, {results['threads']} threads",
        f"{shard['rate']:.0f} /s",
        f"{shard['checked']} checked in {shard['seconds']:.1f} s",
    )
    row(
        "  per-shard rate, 1 thread",
        f"{single_thread['rate']:.0f} /s",
        f"{single_thread['checked']} checked in {single_thread['seconds']:.1f} s",
    )
    row("  charge reads per check", f"{shard['charge_reads_per_check']:.2f}")
    row("  index queries per check", f"{shard['queries_per_check']:.3f}", "DueIndex pages")
    print(f"  DynamoDB requests per check: {json.dumps(shard['dynamodb_per_check'])}")
    print(f"3. every shard fanned out at once through the handler ({fan['charges']} due charges)")
    row(
        "  all shards fanned out",
        f"{fan['rate']:.0f} /s",
        f"{fan['units_run']} units, {fan['seconds']:.1f} s, one process on this machine",
    )
    row(
        "  charge reads per check",
        f"{fan['charge_reads_per_check']:.3f}",
        f"retried requests: {fan['retries']} (a retried write that went through fails its"
        " condition: one more read)",
    )
    print(f"  SQS requests: {json.dumps(fan['sqs'])}")
    print("4. projection: 100,000 due charges, the 8 charge shards each in its own invocation")
    print(
        f"  assumptions: {plan['threads']} threads per shard (RECONCILER_THREADS); an invocation"
        f" has {plan['vcpu']:.2f} vCPU\n  ({plan['memory_mb']} MB) to itself; a check takes"
        " what 1 measured (its DynamoDB and ePay calls answer as\n  fast under the whole load"
        " as one at a time here; a local ePay answers in a few ms, a real one\n  later: see the"
        " threads needed below); the tick and the queue add well under a second."
    )
    row(
        "  per invocation: threads / check time",
        f"{plan['invocation_by_latency']:.0f} /s",
        f"{plan['threads']} / {one['median_ms']:.1f} ms",
    )
    row(
        "  per invocation: vCPU / CPU per check",
        f"{plan['invocation_by_cpu']:.0f} /s",
        f"{plan['vcpu']:.2f} / {one['cpu_median_ms']:.2f} ms",
    )
    row(
        f"  projected time for {TARGET:,} due charges",
        f"{plan['seconds']:.1f} s",
        f"{plan['shards']} x the lower of the two = {plan['rate']:.0f} /s",
    )
    row(
        "  at the per-shard rate measured in 2",
        f"{plan['measured_seconds']:.1f} s",
        f"{plan['shards']} x {shard['rate']:.0f} /s (this machine: one process, shared CPU)",
    )
    row("  schedule period (ReconcileSchedule)", f"{plan['period']} s")
    row("  needed per shard", f"{plan['needed_per_shard_rate']:.0f} /s")
    needed = ", ".join(f"{ms} ms: {n}" for ms, n in plan["threads_needed_at_ms"].items())
    print(f"  threads per shard needed when a check takes {needed} (max 16)")
    print("-" * 100)
    # A write retried after it had gone through loses its condition, and the charge is read
    # again to see who won (as after a lost race): phases 2 and 3 may show a few of those.
    one_read = (
        one["charge_reads_max"] <= 1
        and shard["charge_reads_per_check"] <= 1.01
        and fan["charge_reads_per_check"] <= 1.01
    )
    print(f"one read per check: {met(one_read)}")
    print(f"{TARGET:,} within {plan['period']} s: {met(plan['met'])}")
    print(f"total run time {elapsed:.0f} s")
    summary = results | {"one_read_per_check": one_read, "elapsed_s": elapsed}
    print(json.dumps(summary, sort_keys=True, default=str))


def run(sizes: Sizes) -> dict[str, Any]:
    """Start the stack, seed, measure."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    # One process stands in for many containers: its clients' pools are shared by every
    # shard's threads, so urllib3 says when it opens connections beyond them.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    with (
        start_stack(
            0, environ={}, dynamodb="dynamodb-local", charge_events=False, events_feed=False
        ) as stack,
        open(os.devnull, "w") as sink,
    ):
        stack.require_simulator().postlink_drop = True
        seeder = Seeder(stack)
        reconciler = bootstrap.reconciler()
        threads = int(os.environ["RECONCILER_THREADS"])
        print(f"seeding and checking (threads per shard: {threads}) ...", flush=True)
        spread_over = len(SPREAD_SHARDS)
        single = [
            charge_id
            for n, shard_no in enumerate(SPREAD_SHARDS)
            for charge_id in seeder.seed(
                shard_no, sizes.single // spread_over + (n < sizes.single % spread_over)
            )
        ]
        with silenced(sink):
            one = one_at_a_time(reconciler, single, stack.require_simulator())
        ids = seeder.seed(SINGLE_SHARD, sizes.shard)
        with silenced(sink):
            shard = shard_run(reconciler, SINGLE_SHARD, ids)
        lone = seeder.seed(ONE_THREAD_SHARD, sizes.shard_one_thread)
        sequential = Reconciler(
            store=bootstrap.store(),
            settler=bootstrap.settler(),
            transitions=bootstrap.transitions(),
            clock=bootstrap.now,
            terminals=bootstrap.terminals(),
            threads=1,
        )
        with silenced(sink):
            shard_one_thread = shard_run(sequential, ONE_THREAD_SHARD, lone)
        spread = [
            i
            for shard_no in range(DUE_SHARDS)
            for i in seeder.seed(shard_no, sizes.fanned_per_shard)
        ]
        print(f"fanning out {len(spread)} due charges over {DUE_SHARDS} shards ...", flush=True)
        with silenced(sink):
            fanned = fanned_out(stack, len(spread))
        every = single + ids + lone + spread
        statuses = seeder.statuses(every)
    return {
        "cores": os.cpu_count() or 1,
        "load": os.getloadavg()[0],
        "sizes": vars(sizes),
        "threads": threads,
        "one": one,
        "shard": shard,
        "shard_one_thread": shard_one_thread,
        "fanned": fanned,
        "final_statuses": dict(statuses),
        "projection": projection(one, shard, threads),
    }


def main() -> int:
    """Parse the arguments, measure, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few charges: checks it runs")
    parser.add_argument(
        "--charges", type=int, metavar="N", help="N due charges fanned out (others in proportion)"
    )
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else sizes_for(args.charges) if args.charges else Sizes()
    started = time.perf_counter()
    print("starting the local stack (DynamoDB Local, moto, ePay simulator) ...", flush=True)
    results = run(sizes)
    report(results, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
