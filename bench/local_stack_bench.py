"""Benchmark of the local stack over HTTP: POST /charges at concurrency 1, 8 and 32.

Run by `make bench-local` (PYTHONPATH=layers/payments:.). It prints numbers and never fails on
them: the two target lines only say "met" or "NOT met". The stack is the one `make run` starts
(`local.run.start_stack` with `make run`'s defaults: DynamoDB Local when Java and the jar are
there, moto's server in a process of its own, the handlers in `make run`'s worker processes
(`--processes`, local.apigw.pool; their stdout, the functions' logs, goes to /dev/null), the ePay
simulator delivering postLinks (POSTLINK_DELAY_SECONDS after the auth, as bench/cost_bench.py
assumes: ePay's postLink lands after the charge's own answer), the table's stream into the
charge events function, the renewal and reconciler schedules), without the local event feed
(nothing reads it here). The clients run in a process of their own (as `make run`'s callers
do), one thread per connection. Each client thread keeps its own keep-alive `http.client`
connection and sends the canonical body of events/charges/create-charge.json with a fresh
Idempotency-Key, unsigned (the local API does not check SigV4, as `make run`'s banner says).

Top-level imports are stdlib only.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from local.run import LocalStack

ROOT = Path(__file__).resolve().parents[1]
EVENT_PATH = ROOT / "events" / "charges" / "create-charge.json"
CONCURRENCY = (1, 8, 32)
TARGET_THROUGHPUT = 60.0  # charges/s at concurrency 8
TARGET_THROUGHPUT_AT = 8
TARGET_P50_MS = 30.0  # at concurrency 1
TARGET_P50_AT = 1
REQUEST_TIMEOUT = 35.0  # above the local API's 29 s integration timeout
POSTLINK_WAIT = 60.0
# ePay's postLink lands after the charge's answer (delays of minutes have been seen); with no
# delay the simulator posts it while the charge is still being captured, which ePay's latency
# never allows. The same figure as bench/cost_bench.py's. A level's CPU includes its postLinks.
POSTLINK_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class Sizes:
    """How many charges each part sends (`per_level`: at each concurrency)."""

    # DynamoDB Local's JIT needs a couple of thousand charges before its CPU per request settles
    # (its first 400 cost it about 50 ms of CPU a charge, 11 ms once settled): the stack is
    # warmed in rounds at concurrency 8 until the child processes' CPU per charge of a round
    # is within SETTLED of the round before (at least `min_rounds`, at most `warmup_rounds`:
    # the machine's noise between two rounds is about 5%), so the levels measure the stack as
    # a session that has run a while does. Each round is printed.
    warmup: int = 400  # charges a round
    min_rounds: int = 5
    warmup_rounds: int = 10
    per_level: tuple[tuple[int, int], ...] = ((1, 200), (8, 480), (32, 640))
    # Each level runs this many times in a row and its row is the run of median throughput (all
    # runs are printed): on a shared 2-core machine the same code's CPU per charge moves by up
    # to a third from one minute to the next, and one slow minute should not be the record.
    repeats: int = 3


SMOKE = Sizes(
    warmup=4, min_rounds=1, warmup_rounds=1, per_level=((1, 3), (8, 8), (32, 32)), repeats=1
)
SETTLED = 0.10  # a round's child CPU per charge within 10% of the round before's


@dataclass(frozen=True)
class Level:
    """What one concurrency level saw."""

    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[str, int]
    postlinks: int
    postlink_failures: int
    cpu_ms: float  # this process (API, simulator, pollers; not the clients) per charge
    #: The stack's child processes (handler workers, DynamoDB Local, moto) per charge.
    child_cpu_ms: float | None
    #: The same, per child process ("handler workers", "DynamoDB Local", "moto"); empty without
    #: /proc.
    child_cpu_by_process: dict[str, float]
    #: ePay status requests per charge (the simulator's journal): a postLink that finds its
    #: charge still unsettled asks the status API.
    status_calls: float = 0.0

    @property
    def throughput(self) -> float:
        """Answered charges per second of wall time."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def non_201(self) -> int:
        """Answers other than 201, transport errors included."""
        return sum(count for status, count in self.statuses.items() if status != "201")

    def percentile(self, pct: int) -> float:
        """Nearest-rank percentile of the latencies, in ms."""
        ordered = sorted(self.latencies_ms)
        rank = max(1, -(-pct * len(ordered) // 100))
        return ordered[rank - 1]

    def summary(self) -> dict[str, Any]:
        """The row as JSON-ready numbers."""
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 1),
            "p95_ms": round(self.percentile(95), 1),
            "p99_ms": round(self.percentile(99), 1),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 1),
            "non_201": self.non_201,
            "statuses": self.statuses,
            "postlinks_delivered": self.postlinks,
            "postlink_failures": self.postlink_failures,
            "cpu_ms_per_charge": round(self.cpu_ms, 1),
            "child_cpu_ms_per_charge": (
                None if self.child_cpu_ms is None else round(self.child_cpu_ms, 1)
            ),
            "child_cpu_ms_per_charge_by_process": {
                name: round(ms, 1) for name, ms in sorted(self.child_cpu_by_process.items())
            },
            "epay_status_calls_per_charge": round(self.status_calls, 3),
        }


def process_cpu() -> float:
    """CPU seconds of this process so far (every thread)."""
    times = os.times()
    return times.user + times.system


def children_cpu(
    exclude: int | None = None, workers: frozenset[int] = frozenset()
) -> dict[str, float] | None:
    """CPU seconds of this process's running children by process, each with its own running
    descendants (DynamoDB Local and moto's server run under a guard, a child whose child is
    the server), from /proc, but for ``exclude`` (the clients); None without /proc.

    A child is "handler workers" when its id is in ``workers`` (the local API's worker
    processes), "DynamoDB Local" when java runs in its tree, "moto" when it is python (moto's
    server and its guard), else its command name.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    cpu: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name is between the parentheses; after the ")": state, ppid, ...
            # utime, stime.
            name, after = (entry / "stat").read_text().split("(", 1)[1].rsplit(")", 1)
        except (OSError, ValueError):
            continue  # ended meanwhile
        fields = after.split()
        pid = int(entry.name)
        parents[pid], names[pid], cpu[pid] = int(fields[1]), name, int(fields[11]) + int(fields[12])
    trees: dict[int, list[int]] = {}  # each child of this process: itself and its descendants
    for pid in parents:
        node, seen = pid, 0
        while node in parents and parents[node] != me and seen < 64:
            node, seen = parents[node], seen + 1
        if parents.get(node) == me and node != exclude:
            trees.setdefault(node, []).append(pid)
    ticks: dict[str, int] = {}
    for child, tree in trees.items():
        label = (
            "handler workers"
            if child in workers
            else "DynamoDB Local"
            if any(names[pid] == "java" for pid in tree)
            else "moto"
            if "python" in names[child]
            else names[child]
        )
        ticks[label] = ticks.get(label, 0) + sum(cpu[pid] for pid in tree)
    return {label: count / tick for label, count in ticks.items()}


def met(ok: bool) -> str:
    """A target's verdict."""
    return "met" if ok else "NOT met"


# --------------------------------------------------------------------------- the stack


def start_local_stack() -> LocalStack:
    """The stack as `make run` starts it, on a free port, minus the local event feed."""
    from local import run

    # `make run`'s defaults come from its own argument parser, mapped as its main() maps them
    # (every schedule period, 0 meaning off), so a new default there is measured here too.
    defaults = run._parse_args([])
    periods: dict[str, Any] = {
        name: value or None for name, value in vars(defaults).items() if name.endswith("_period")
    }
    # environ={}: the bench always measures the local servers, whatever the shell points at.
    # The handler workers' stdout (the functions' logs) goes where this process's does: nowhere.
    return run.start_stack(
        0,
        environ={},
        dynamodb=defaults.dynamodb,
        events_feed=False,
        processes=defaults.processes,
        worker_output=os.devnull,
        **periods,
    )


@contextlib.contextmanager
def console_like_make_run(sink: TextIO) -> Iterator[None]:
    """Log and print what `make run` would, into ``sink``, so the cost stays and the table reads.

    `make run` logs INFO (one line per request from the local API) and the functions print their
    Powertools JSON logs and EMF metrics to stdout; here all of it is formatted and written to
    ``sink``. Warnings and errors still reach stderr.
    """
    from local.run import NOISY_LOGGERS
    from payments.observability import logger as function_logger

    root = logging.getLogger()
    to_sink = logging.StreamHandler(sink)
    to_sink.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    previous_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(to_sink)
    root.addHandler(to_stderr)
    noisy = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    for name in noisy:
        logging.getLogger(name).setLevel(logging.WARNING)
    # The Logger's handler holds the sys.stdout of import time, so its stream is swapped too.
    function_handler = function_logger.registered_handler
    previous_stream = function_handler.setStream(sink)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        function_handler.setStream(previous_stream)  # type: ignore[attr-defined]
        for name, level in noisy.items():
            logging.getLogger(name).setLevel(level)
        root.removeHandler(to_stderr)
        root.removeHandler(to_sink)
        root.setLevel(previous_level)


# --------------------------------------------------------------------------- the clients


class Charges:
    """Hands out the charges of one level and collects their outcomes (thread-safe)."""

    def __init__(self, total: int, body: bytes) -> None:
        self.body = body
        self._left = total
        self._lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.statuses: dict[str, int] = {}

    def take(self) -> bool:
        """Whether one more charge is to be sent (and claims it)."""
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def record(self, latency_ms: float, status: str) -> None:
        """One answer (or transport error)."""
        with self._lock:
            self.latencies_ms.append(latency_ms)
            self.statuses[status] = self.statuses.get(status, 0) + 1


def charge_body() -> bytes:
    """The canonical POST /charges body (events/charges/create-charge.json)."""
    event = json.loads(EVENT_PATH.read_text())
    return str(event["body"]).encode()


def client(
    host: str, port: int, charges: Charges, connected: threading.Barrier, go: threading.Event
) -> None:
    """One client: its own keep-alive connection, charges until none is left."""
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT)
    try:
        connection.connect()
        connected.wait()
        go.wait()
        while charges.take():
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Idempotency-Key": f"bench-local-{uuid.uuid4().hex}",
            }
            began = time.perf_counter()
            try:
                connection.request("POST", "/charges", body=charges.body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                status = str(answer.status)
                if answer.will_close:
                    connection.close()  # http.client reconnects on the next request
            except (OSError, http.client.HTTPException) as error:
                status = type(error).__name__
                connection.close()
            charges.record((time.perf_counter() - began) * 1000, status)
    finally:
        connection.close()


def run_clients(host: str, port: int, concurrency: int, total: int) -> None:
    """The clients' process (``--clients``): opens the connections, says "ready", sends the
    charges once told "go" on stdin, then prints one JSON line of what it saw.

    The clients run in a process of their own, as `make run`'s callers do: in the stack's
    process their threads would take the stack's GIL (and count in its CPU), and a client
    waiting for that GIL would add to the latencies it measures.
    """
    charges = Charges(total, charge_body())
    connected, go = threading.Barrier(concurrency + 1), threading.Event()
    threads = [
        threading.Thread(
            target=client, args=(host, port, charges, connected, go), name=f"bench-{n}"
        )
        for n in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    connected.wait()  # every connection is open
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    answer = {
        "seconds": seconds,
        "latencies_ms": charges.latencies_ms,
        "statuses": charges.statuses,
    }
    print(json.dumps(answer), flush=True)


def run_level(stack: LocalStack, concurrency: int, total: int) -> Level:
    """``total`` charges from ``concurrency`` threads of the clients' process; waits for their
    postLinks afterwards."""
    simulator = stack.require_simulator()
    postlinks_before = len(simulator.postlinks)
    auths_before = len(simulator.requests("auth"))
    statuses_before = len(simulator.requests("status"))
    host, port = stack.url.removeprefix("http://").rsplit(":", 1)
    numbers = (str(concurrency), str(total))
    clients = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--clients", host, port, *numbers],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert clients.stdin is not None
    assert clients.stdout is not None
    try:
        if clients.stdout.readline().strip() != "ready":
            raise RuntimeError("the clients' process did not start")
        pool = stack.gateway.pool
        workers = frozenset(pool.pids if pool is not None else ())
        cpu_before = process_cpu()
        children_before = children_cpu(exclude=clients.pid, workers=workers)
        clients.stdin.write("go\n")
        clients.stdin.flush()
        seen = json.loads(clients.stdout.readline())
        # Each auth of the approved card sends one postLink: the level's work ends with them.
        auths = len(simulator.requests("auth")) - auths_before
        delivered = simulator.wait_for_postlinks(postlinks_before + auths, timeout=POSTLINK_WAIT)
        status_calls = len(simulator.requests("status")) - statuses_before
        cpu = process_cpu() - cpu_before
        children_after = children_cpu(exclude=clients.pid, workers=workers)
    finally:
        clients.stdin.close()
        clients.wait(timeout=60)
    seconds = float(seen["seconds"])
    latencies_ms: list[float] = [float(ms) for ms in seen["latencies_ms"]]
    statuses: dict[str, int] = {str(k): int(v) for k, v in seen["statuses"].items()}
    by_process = (
        {}
        if children_before is None or children_after is None
        else {
            name: after - children_before.get(name, 0.0) for name, after in children_after.items()
        }
    )
    child_cpu = None if children_after is None else sum(by_process.values())
    mine = delivered[postlinks_before:]
    failures = sum(1 for d in mine if d.error or not (200 <= (d.status or 0) < 300))
    return Level(
        concurrency,
        len(latencies_ms),
        seconds,
        latencies_ms,
        dict(sorted(statuses.items())),
        len(mine),
        failures,
        cpu * 1000 / max(1, total),
        None if child_cpu is None else child_cpu * 1000 / max(1, total),
        {name: seconds * 1000 / max(1, total) for name, seconds in by_process.items()},
        status_calls / max(1, total),
    )


def warm_up(stack: LocalStack, sizes: Sizes, out: TextIO) -> list[Level]:
    """Rounds of ``sizes.warmup`` charges at concurrency 8 until the child processes' CPU per
    charge settles (see Sizes); the rounds run."""
    rounds: list[Level] = []
    for number in range(1, sizes.warmup_rounds + 1):
        level = run_level(stack, 8, sizes.warmup)
        rounds.append(level)
        shares = ", ".join(f"{n} {ms:.1f}" for n, ms in sorted(level.child_cpu_by_process.items()))
        print(
            f"warm-up round {number}: {sizes.warmup} charges at concurrency 8, "
            f"{level.throughput:.1f}/s, child CPU ms a charge: {shares or '-'}",
            file=out,
            flush=True,
        )
        if len(rounds) >= max(2, sizes.min_rounds) and _settled(rounds[-2], rounds[-1]):
            break
    return rounds


def _settled(before: Level, after: Level) -> bool:
    """Whether the child CPU per charge moved by less than SETTLED between two rounds."""
    if before.child_cpu_ms is None or after.child_cpu_ms is None:
        return True  # without /proc there is nothing to watch: one round more is enough
    return abs(after.child_cpu_ms - before.child_cpu_ms) <= SETTLED * before.child_cpu_ms


# --------------------------------------------------------------------------- report


def median_run(runs: list[Level]) -> Level:
    """The run of median throughput (the lower middle one of an even number)."""
    return sorted(runs, key=lambda level: level.throughput)[(len(runs) - 1) // 2]


def report(
    levels: list[Level],
    warmup: list[Level],
    dynamodb: str,
    elapsed: float,
    runs: dict[int, list[Level]] | None = None,
    postlink_delay: float = POSTLINK_DELAY_SECONDS,
) -> None:
    """Print the table, the two targets, then one JSON line with the same numbers."""
    by_concurrency = {level.concurrency: level for level in levels}
    throughput = by_concurrency[TARGET_THROUGHPUT_AT].throughput
    p50 = by_concurrency[TARGET_P50_AT].percentile(50)
    throughput_met = throughput >= TARGET_THROUGHPUT
    p50_met = p50 <= TARGET_P50_MS
    all_201 = all(level.non_201 == 0 for level in levels)
    width = 124
    print()
    print(f"POST /charges over HTTP, local stack as `make run` starts it (DynamoDB: {dynamodb})")
    print(
        f"warm-up {sum(r.requests for r in warmup)} charges in {len(warmup)} rounds "
        f"(until the child CPU per charge settled); postLinks delivered by the simulator "
        f"{postlink_delay:g} s after the auth; CPU in ms per "
        "charge: this process (API, simulator) / child processes (handler workers, DynamoDB "
        "Local, moto)"
    )
    print("=" * width)
    print(
        f"{'concurrency':>11} {'requests':>9} {'charges/s':>10} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'non-201':>8} {'postLinks ok/failed':>20} {'CPU ms':>13}   target"
    )
    print("-" * width)
    for level in levels:
        target = ""
        if level.concurrency == TARGET_THROUGHPUT_AT:
            target = f"charges/s >= {TARGET_THROUGHPUT:.0f}: {met(throughput_met)}"
        if level.concurrency == TARGET_P50_AT:
            target = f"p50 <= {TARGET_P50_MS:.0f} ms: {met(p50_met)}"
        child = "-" if level.child_cpu_ms is None else f"{level.child_cpu_ms:.1f}"
        postlinks = f"{level.postlinks - level.postlink_failures}/{level.postlink_failures}"
        cpu = f"{level.cpu_ms:.1f}/{child}"
        print(
            f"{level.concurrency:>11} {level.requests:>9} {level.throughput:>10.1f} "
            f"{level.percentile(50):>8.1f} {level.percentile(95):>8.1f} "
            f"{level.percentile(99):>8.1f} {level.non_201:>8} {postlinks:>20} {cpu:>13}   "
            f"{target}"
        )
    print("-" * width)
    for level in levels:
        if level.child_cpu_by_process:
            shares = ", ".join(
                f"{name} {ms:.1f}" for name, ms in sorted(level.child_cpu_by_process.items())
            )
            print(f"concurrency {level.concurrency} child CPU ms per charge: {shares}")
    for level in levels:
        print(
            f"concurrency {level.concurrency} ePay status calls per charge: "
            f"{level.status_calls:.2f}"
        )
    for concurrency, runs_of_level in (runs or {}).items():
        if len(runs_of_level) > 1:
            seen = ", ".join(
                f"{r.throughput:.1f}/s p50 {r.percentile(50):.1f} ms" for r in runs_of_level
            )
            print(f"concurrency {concurrency}, each run (the row is the median): {seen}")
    for level in levels:
        if level.non_201:
            print(f"concurrency {level.concurrency} answers: {json.dumps(level.statuses)}")
    print(
        f"throughput at concurrency {TARGET_THROUGHPUT_AT}  {throughput:.1f} charges/s  "
        f"target >= {TARGET_THROUGHPUT:.0f}: {met(throughput_met)}"
    )
    print(
        f"p50 at concurrency {TARGET_P50_AT}  {p50:.1f} ms  "
        f"target <= {TARGET_P50_MS:.0f} ms: {met(p50_met)}"
    )
    print(f"all answers 201  {'yes' if all_201 else 'NO'}")
    print(f"total run time {elapsed:.0f} s")
    summary = {
        "levels": [level.summary() for level in levels],
        "dynamodb": dynamodb,
        "warmup": {
            "charges": sum(r.requests for r in warmup),
            "rounds": [
                {
                    "throughput_per_s": round(r.throughput, 1),
                    "child_cpu_ms_per_charge": r.summary()["child_cpu_ms_per_charge_by_process"],
                }
                for r in warmup
            ],
        },
        "targets": {
            "throughput_c8": {
                "value": round(throughput, 1),
                "target": TARGET_THROUGHPUT,
                "met": throughput_met,
            },
            "p50_c1_ms": {"value": round(p50, 1), "target": TARGET_P50_MS, "met": p50_met},
            "all_201": all_201,
        },
        "runs": {
            str(concurrency): [
                {"throughput_per_s": round(r.throughput, 1), "p50_ms": round(r.percentile(50), 1)}
                for r in runs_of_level
            ]
            for concurrency, runs_of_level in (runs or {}).items()
        },
        "elapsed_s": round(elapsed, 1),
    }
    print(json.dumps(summary, sort_keys=True))


def main() -> int:
    """Start the local stack, warm it up, measure each concurrency, print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few charges: checks it runs")
    parser.add_argument(
        "--postlink-delay",
        type=float,
        default=POSTLINK_DELAY_SECONDS,
        metavar="SECONDS",
        help=f"when the simulator sends a postLink after its auth (default "
        f"{POSTLINK_DELAY_SECONDS:g}; 0: while the charge is still being answered, as the "
        "simulator does by default)",
    )
    parser.add_argument(
        "--clients",
        nargs=4,
        metavar=("HOST", "PORT", "CONCURRENCY", "TOTAL"),
        help=argparse.SUPPRESS,  # the clients' process of one level (run_level starts it)
    )
    args = parser.parse_args()
    if args.clients:
        host, port, concurrency, total = args.clients
        run_clients(host, int(port), int(concurrency), int(total))
        return 0
    sizes = SMOKE if args.smoke else Sizes()

    started = time.perf_counter()
    out = sys.stdout  # progress lines; everything the stack prints goes to the sink
    print("starting the local stack (as `make run`) ...", flush=True)
    levels: list[Level] = []
    runs: dict[int, list[Level]] = {}
    with open(os.devnull, "w") as sink, console_like_make_run(sink), start_local_stack() as stack:
        dynamodb = "moto" if stack.dynamodb_endpoint == stack.aws_endpoint else "DynamoDB Local"
        stack.require_simulator().postlink_delay = args.postlink_delay
        warmup = warm_up(stack, sizes, out)
        for concurrency, total in sizes.per_level:
            runs[concurrency] = []
            for number in range(1, sizes.repeats + 1):
                level = run_level(stack, concurrency, total)
                runs[concurrency].append(level)
                print(
                    f"concurrency {concurrency}, run {number} of {sizes.repeats}: {total} "
                    f"charges, {level.throughput:.1f}/s, p50 {level.percentile(50):.1f} ms",
                    file=out,
                    flush=True,
                )
            levels.append(median_run(runs[concurrency]))
    report(levels, warmup, dynamodb, time.perf_counter() - started, runs, args.postlink_delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
