"""Cold import of every function's handler against `import boto3` alone (prints numbers only).

Each import runs in a fresh interpreter laid out like Lambda (local.cold_import: the function's
folder, then the layer; PATH and PYTHONPATH only) and is timed with perf_counter inside the child.
Every round imports boto3 once and each handler once, so drift hits all alike; the table gives
the medians, each handler's ratio to boto3 beside the target, and what the handler's import adds
on top of boto3's modules (self time by top-level package, one `-X importtime` run).

On a busy machine the timings move with the load (a ratio shifts by 0.1 or more between runs).
`--instructions` adds a load-independent measure: the instructions each import executes (valgrind's
cachegrind `Ir`, the interpreter's own start-up subtracted), as a ratio to `import boto3`'s. It
needs valgrind and takes a few minutes; on a quiet machine it agrees with the timed ratio to ~0.03.

    PYTHONPATH=layers/payments:. .venv/bin/python bench/cold_start_bench.py [--runs 7] [--smoke]
        [--instructions]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from local.cold_import import (
    FUNCTIONS_DIR,
    ColdImport,
    cold_import,
    function_names,
    import_environment,
)

TARGET_RATIO = 1.3
RUNS = 7
TOP_PACKAGES = 4


@dataclass(frozen=True)
class FunctionImport:
    """One function's cold import: the median over the runs and what it loads beyond boto3."""

    name: str
    median_ms: float
    ratio: float
    modules: int
    extra_modules: int
    tracer_loaded: bool
    extra_self_ms: list[tuple[str, float]]


def timed_rounds(functions: list[str], runs: int) -> dict[str | None, list[ColdImport]]:
    """`runs` interleaved rounds of boto3 alone (key None) and each handler."""
    for name in [None, *functions]:  # compile the .pyc files once; not counted
        cold_import(name)
    samples: dict[str | None, list[ColdImport]] = {name: [] for name in [None, *functions]}
    for _ in range(runs):
        for name, taken in samples.items():
            taken.append(cold_import(name))
    return samples


def self_time_beyond(function: str, baseline: frozenset[str]) -> list[tuple[str, float]]:
    """Self import time (ms) by top-level package of the modules `import boto3` does not load."""
    report = cold_import(function, python_options=("-X", "importtime")).stderr
    by_package: Counter[str] = Counter()
    for line in report.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line, or anything else on stderr
        module = parts[2].strip()
        if module not in baseline:
            by_package[module.split(".")[0]] += int(parts[0])
    return [(name, us / 1000) for name, us in by_package.most_common(TOP_PACKAGES)]


def median_ms(samples: list[ColdImport]) -> float:
    """The median import time in milliseconds."""
    return statistics.median(sample.seconds for sample in samples) * 1000


def measure(runs: int) -> tuple[float, list[FunctionImport]]:
    """The median `import boto3` (ms) and every function's cold import."""
    samples = timed_rounds(function_names(), runs)
    boto3_samples = samples.pop(None)
    boto3_ms = median_ms(boto3_samples)
    baseline = boto3_samples[-1].modules
    results = []
    for name, taken in samples.items():
        assert name is not None
        modules = taken[-1].modules
        results.append(
            FunctionImport(
                name=name,
                median_ms=median_ms(taken),
                ratio=median_ms(taken) / boto3_ms,
                modules=len(modules),
                extra_modules=len(modules - baseline),
                tracer_loaded="aws_xray_sdk" in modules,
                extra_self_ms=self_time_beyond(name, baseline),
            )
        )
    return boto3_ms, results


def instructions(valgrind: str, function: str | None, statement: str) -> int:
    """Instructions a fresh interpreter laid out like Lambda executes to run `statement` (Ir)."""
    folder = FUNCTIONS_DIR.parent if function is None else FUNCTIONS_DIR / function
    done = subprocess.run(
        [
            valgrind,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            statement,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=import_environment(function),
        cwd=folder,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


def instruction_ratios(valgrind: str, functions: list[str]) -> dict[str, float]:
    """Each handler import's instructions over `import boto3`'s, start-up subtracted from both."""
    jobs: list[tuple[str | None, str]] = [(None, "pass"), (None, "import boto3")]
    jobs += [(name, "import app") for name in functions]
    with ThreadPoolExecutor(max_workers=2) as pool:  # valgrind runs one thread per process
        counts = list(pool.map(lambda job: instructions(valgrind, *job), jobs))
    empty, boto3_only, handlers = counts[0], counts[1], counts[2:]
    return {
        name: (count - empty) / (boto3_only - empty)
        for name, count in zip(functions, handlers, strict=True)
    }


def report_instructions(ratios: dict[str, float]) -> None:
    """Print the instruction ratios beside the target, then one JSON line with them."""
    print()
    print("Cold import in instructions executed (valgrind Ir, start-up subtracted) vs import boto3")
    print("-" * 60)
    for name, ratio in ratios.items():
        verdict = "met" if round(ratio, 2) <= TARGET_RATIO else "NOT met"
        print(f"{name:<20}{ratio:>8.2f}   <= {TARGET_RATIO} {verdict}")
    print(json.dumps({"instruction_ratios": {k: round(v, 3) for k, v in ratios.items()}}))


def report(boto3_ms: float, results: list[FunctionImport], runs: int, elapsed: float) -> None:
    """Print the table, then one JSON line with the same numbers."""
    width = 104
    print()
    print(f"Cold import per function (fresh interpreter, median of {runs}) vs import boto3 alone")
    print("=" * width)
    print(
        f"{'function':<20}{'import':>10}{'ratio':>8}   {'target':<18}"
        f"{'modules':>9}{'+boto3':>8}   X-Ray SDK"
    )
    print("-" * width)
    print(f"{'(import boto3)':<20}{boto3_ms:>7.1f} ms{1.0:>8.2f}")
    for r in results:
        verdict = "met" if round(r.ratio, 2) <= TARGET_RATIO else "NOT met"  # as printed
        print(
            f"{r.name:<20}{r.median_ms:>7.1f} ms{r.ratio:>8.2f}   "
            f"{f'<= {TARGET_RATIO} {verdict}':<18}{r.modules:>9}{r.extra_modules:>8}   "
            f"{'loaded' if r.tracer_loaded else 'not loaded'}"
        )
    print("-" * width)
    print(
        "self import time beyond boto3's modules, by top-level package (ms, -X importtime, 1 run)"
    )
    for r in results:
        print(f"  {r.name:<20}" + ", ".join(f"{pkg} {ms:.1f}" for pkg, ms in r.extra_self_ms))
    print(f"total run time {elapsed:.0f} s")
    summary = {
        "boto3_ms": round(boto3_ms, 1),
        "target_ratio": TARGET_RATIO,
        "runs": runs,
        "functions": {
            r.name: {"ms": round(r.median_ms, 1), "ratio": round(r.ratio, 3)} for r in results
        },
    }
    print(json.dumps(summary, sort_keys=True))


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="interleaved rounds (median)")
    parser.add_argument("--smoke", action="store_true", help="one round: checks the script runs")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions under valgrind (load-independent; a few minutes)",
    )
    args = parser.parse_args()
    valgrind = shutil.which("valgrind")
    if args.instructions and valgrind is None:
        parser.error("--instructions needs valgrind on PATH")
    runs = 1 if args.smoke else args.runs
    started = time.perf_counter()
    boto3_ms, results = measure(runs)
    report(boto3_ms, results, runs, time.perf_counter() - started)
    if args.instructions and valgrind is not None:
        report_instructions(instruction_ratios(valgrind, [r.name for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
