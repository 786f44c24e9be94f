"""Every benchmark in bench/ runs in smoke mode (a few iterations) and prints its figures.

Benchmarks are not tests: nothing here looks at a timing or a target. This keeps the scripts from
rotting as the layer and the local stack move under them (each one starts its own local stack).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from local.cold_import import function_names

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"\d+(\.\d+)?"

# What each script must print, as multiline regular expressions over its stdout.
EXPECTED: dict[str, list[str]] = {
    "cold_start_bench.py": [
        rf"^\(import boto3\)\s+{NUMBER} ms",
        *(rf"^{name}\s+{NUMBER} ms\s+{NUMBER}\s+<= 1\.3 " for name in function_names()),
    ],
    "charge_bench.py": [
        rf"handler median / p95\s+{NUMBER} / {NUMBER} ms",
        rf"floor median / p95\s+{NUMBER} / {NUMBER} ms",
        rf"ePay calls\s+{NUMBER}",
        rf"DynamoDB writes\s+{NUMBER}",
        rf"peak after all charges\s+{NUMBER} MB",
    ],
    "cost_bench.py": [
        r"^cost of an approved charge: \d+ charges",
        rf"^  wru\s+{NUMBER}\s+{NUMBER}",
        rf"^  total\s+{NUMBER}\s+target <= 15\.00 (met|NOT met)$",
    ],
    "local_stack_bench.py": [
        *(
            rf"^\s+{c}\s+\d+\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\d+\s+\d+/\d+\s+"
            rf"{NUMBER}/({NUMBER}|-)\s"
            for c in (1, 8, 32)
        ),
        rf"^throughput at concurrency 8\s+{NUMBER} charges/s\s+target >= 60: (met|NOT met)$",
        rf"^p50 at concurrency 1\s+{NUMBER} ms\s+target <= 30 ms: (met|NOT met)$",
        r"^all answers 201\s+(yes|NO)$",
        *(rf"^concurrency {c} ePay status calls per charge: {NUMBER}$" for c in (1, 8, 32)),
    ],
    "reconciler_bench.py": [
        rf"time per check median / p95\s+{NUMBER} / {NUMBER} ms",
        rf"per-shard rate, \d+ threads\s+{NUMBER} /s",
        rf"all shards fanned out\s+{NUMBER} /s",
        rf"charge reads per check\s+{NUMBER}",
        rf"projected time for 100,000 due charges\s+{NUMBER} s",
        r"^one read per check: (met|NOT met)$",
        r"^100,000 within \d+ s: (met|NOT met)$",
    ],
    "targets.py": [
        r"^cost per million approved charges\s+\$\d+\.\d\d\s+<= \$15\.00\s+(met|NOT met)$",
        r"^postLink telling what its charge holds\s+\d+/\d+ without ePay",
        r"^cold import\s+not measured",
    ],
    "dispatch_bench.py": [
        rf"^per_shard_rate_median {NUMBER} /s",
        # a rate, or why the bootstrap's 5 s read timeout stopped the run on a busy machine
        rf"^all_shards_parallel_rate ({NUMBER} /s|unavailable)",
        r"^shards_needed_at_measured_rate \d+$",
    ],
    "fuzz_bench.py": [
        r"^requests sent\s+\d+",
        r"^5xx seen\s+\d+",
        r"^rejected requests that changed it\s+\d+",
    ],
    "chaos_bench.py": [
        r"^chaos scenario: \d+ charges",
        r"after reconciliation\s+\{",
        r"mismatches with the ledger\s+\d+",
        r"refund mismatches\s+\d+",
    ],
    "invoice_space_bench.py": [
        r"^scenario 1 terminal$",
        r"^scenario 2 terminals$",
        rf"^  allocations per second\s+{NUMBER}$",
        # both scenarios fill their space with no failure, then answer a clear 503
        r"^  failures while space remained\s+0\n(.*\n)+^  failures while space remained\s+0$",
        r"^  exhausted answer\s+503 invoice_space_exhausted retry_after \d+ s",
        r"^  terminal t\d: held \d+ of \d+ .* alarm 80% at charge \d+ on day",
        r"^  store calls per allocation\s+counter updates",
        r"^\s+2\s+\d+\s+2\.00\s",  # the table's 2-terminal row: twice one terminal's space
    ],
}


# The table of every target runs every script: smoked here on one (the others are smoked alone).
EXTRA_ARGS: dict[str, list[str]] = {"targets.py": ["--scripts", "cost_bench.py"]}


def test_every_bench_script_is_smoked() -> None:
    # Given bench/ / Then each script there has a line below (a new one cannot rot unseen)
    assert {path.name for path in (ROOT / "bench").glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_bench_script_runs_in_smoke_mode(script: str) -> None:
    # Given the script in smoke mode, with the layer and the repository on the path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["layers/payments", "."])}

    # When it runs
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--smoke", *EXTRA_ARGS.get(script, [])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    # Then it ends well and prints every figure of its table
    assert done.returncode == 0, done.stderr[-3000:]
    missing = [p for p in EXPECTED[script] if not re.search(p, done.stdout, re.MULTILINE)]
    assert not missing, f"{script} did not print {missing}:\n{done.stdout[-3000:]}"
