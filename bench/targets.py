"""Every benchmark of `make bench` in one run, then one table: each figure beside its target.

Run by `make bench` (PYTHONPATH=layers/payments:.). Each script runs in its own process, one after
the other (so they do not share the machine), its output shown as it comes; the last JSON line
each prints is read back for the table. Every timing there is measured against a floor of the
same run: cold imports against `import boto3`, the warm handler against a bare script making the
same calls, the reconciler's check against the schedule period. Nothing fails on a figure: a
script that ends badly is reported, and the verdicts only say whether a target was met.
`--scripts` runs a subset (the rest show as not measured); `--smoke` passes `--smoke` on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = (
    "cold_start_bench.py",
    "charge_bench.py",
    "cost_bench.py",
    "reconciler_bench.py",
    "local_stack_bench.py",
)
SCRIPT_TIMEOUT = 1800
# Cold imports swing with what else the machine does: more rounds for a steadier median.
FULL_RUN_ARGS = {"cold_start_bench.py": ["--runs", "11"]}


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    measure: str
    figure: str
    target: str
    met: bool | None  # None: informational, or not measured


Results = dict[str, dict[str, Any]]


def _cold(r: dict[str, Any]) -> list[Row]:
    name, worst = max(r["functions"].items(), key=lambda kv: kv[1]["ratio"])
    target = float(r["target_ratio"])
    return [
        Row(
            "cold import, slowest function / `import boto3`",
            f"{worst['ratio']:.2f}x ({name})",
            f"<= {target}x",
            worst["ratio"] <= target,
        )
    ]


def _warm(r: dict[str, Any]) -> list[Row]:
    warm, calls = r["warm"], r["calls"]["auto_capture"]
    return [
        Row(
            "warm POST /charges, median vs the floor",
            f"{warm['ratio_median']:.2f}x ({warm['handler_median_ms']:.1f} ms)",
            f"<= {warm['target_ratio']}x",
            bool(warm["met"]),
        ),
        # The local stack's p50 at concurrency 1 cannot go below this: the same calls, bare.
        Row(
            "the floor: one charge's calls made bare, median",
            f"{warm['floor_median_ms']:.1f} ms ({warm['floor_cpu_median_ms']:.1f} ms CPU)",
            "",
            None,
        ),
        Row(
            "DynamoDB requests of an auto-captured charge",
            f"{calls['dynamodb_reads']} reads, {calls['dynamodb_writes']} writes",
            "",
            None,
        ),
    ]


def _cost(r: dict[str, Any]) -> list[Row]:
    postlink = r["postlink"]
    quiet = postlink["without_epay"] == postlink["deliveries"] > 0
    within = postlink["max_reads"] <= 1 and postlink["max_writes"] <= 1
    return [
        Row(
            "cost per million approved charges",
            f"${r['usd_per_million']:.2f}",
            f"<= ${r['target']:.2f}",
            r["usd_per_million"] <= r["target"],
        ),
        Row(
            "postLink telling what its charge holds",
            f"{postlink['without_epay']}/{postlink['deliveries']} without ePay, "
            f"{postlink['max_reads']} read + {postlink['max_writes']} write",
            "no ePay call, <= 1 read + 1 write",
            quiet and within,
        ),
    ]


def _reconciler(r: dict[str, Any]) -> list[Row]:
    plan, one = r["projection"], r["one"]
    return [
        Row(
            "reconciler: charge reads per check",
            f"{r['fanned']['charge_reads_per_check']:.2f}",
            "1",
            bool(r["one_read_per_check"]),
        ),
        Row("reconciler: time per check (median)", f"{one['median_ms']:.1f} ms", "", None),
        Row(
            "reconciler: 100,000 due charges drained in",
            f"{plan['seconds']:.0f} s",
            f"<= {plan['period']} s (its schedule)",
            bool(plan["met"]),
        ),
    ]


def _local(r: dict[str, Any]) -> list[Row]:
    targets = r["targets"]
    rate, p50 = targets["throughput_c8"], targets["p50_c1_ms"]
    runs = len((r.get("runs") or {}).get("8") or [None])
    of = f" (median of {runs} runs)" if runs > 1 else ""
    return [
        Row(
            "local stack: charges/s at concurrency 8",
            f"{rate['value']:.1f} /s{of}",
            f">= {rate['target']:.0f} /s",
            bool(rate["met"]) and bool(targets["all_201"]),
        ),
        Row(
            "local stack: p50 at concurrency 1",
            f"{p50['value']:.1f} ms{of}",
            f"<= {p50['target']:.0f} ms",
            bool(p50["met"]) and bool(targets["all_201"]),
        ),
    ]


ROWS: dict[str, tuple[str, Callable[[dict[str, Any]], list[Row]]]] = {
    "cold_start_bench.py": ("cold import", _cold),
    "charge_bench.py": ("warm POST /charges", _warm),
    "cost_bench.py": ("cost per million charges", _cost),
    "reconciler_bench.py": ("reconciler", _reconciler),
    "local_stack_bench.py": ("local stack", _local),
}


def last_json(output: str) -> dict[str, Any] | None:
    """The last line of `output` that is a JSON object."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                continue
            if isinstance(found, dict):
                return found
    return None


def run(script: str, smoke: bool) -> dict[str, Any] | None:
    """Run one script, echoing its output; its summary, or None if it ended badly."""
    extra = ["--smoke"] if smoke else FULL_RUN_ARGS.get(script, [])
    command = [sys.executable, f"bench/{script}", *extra]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    lines: list[str] = []
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1) as child:
        assert child.stdout is not None
        for line in child.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        code = child.wait(timeout=SCRIPT_TIMEOUT)
    summary = last_json("".join(lines))
    if code != 0 or summary is None:
        print(f"{script} ended with exit code {code}", flush=True)
        return None
    return summary


def table(results: Results, ran: list[str]) -> list[Row]:
    """The rows of every script (a script not run or ended badly shows as such)."""
    rows: list[Row] = []
    for script, (label, rows_of) in ROWS.items():
        summary = results.get(script)
        if summary is None:
            state = "failed" if script in ran else "not measured"
            rows.append(Row(label, state, "", None if script not in ran else False))
            continue
        rows.extend(rows_of(summary))
    return rows


def report(rows: list[Row], elapsed: float) -> None:
    """Print the table."""
    print()
    print("=" * 128)
    print(f"{'measure':<50}{'figure':<38}{'target':<34}")
    print("-" * 128)
    for row in rows:
        verdict = "" if row.met is None else ("met" if row.met else "NOT met")
        print(f"{row.measure:<50}{row.figure:<38}{row.target:<34}{verdict}")
    print("-" * 128)
    print(f"total run time {elapsed:.0f} s")


def main() -> int:
    """Run the scripts, then print the table and its JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every script in smoke mode")
    parser.add_argument("--scripts", default=",".join(SCRIPTS), help="comma-separated subset")
    args = parser.parse_args()
    chosen = [s for s in args.scripts.split(",") if s]
    unknown = set(chosen) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown scripts: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    results: Results = {}
    for script in chosen:
        summary = run(script, args.smoke)
        if summary is not None:
            results[script] = summary
    rows = table(results, chosen)
    report(rows, time.monotonic() - started)
    print(json.dumps({"rows": [row.__dict__ for row in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
