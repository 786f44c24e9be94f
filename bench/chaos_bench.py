"""The chaos scenario at scale (default 2,000 charges): prints how every charge ended.

Not a test: it prints numbers. The scenario (`local.chaos.run_chaos`) runs against the local stack
(`local.run.start_stack` on DynamoDB Local, with the ePay simulator). `make bench-chaos` or
`PYTHONPATH=layers/payments:. .venv/bin/python bench/chaos_bench.py --charges 3000 --seed 7`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import boto3

from local.chaos import ChaosReport, run_chaos
from local.run import start_stack

SMOKE_CHARGES = 20


def run(charges: int, seed: int) -> tuple[ChaosReport, float]:
    """The scenario on a fresh local stack, and how long it took (seconds)."""
    with start_stack(0, environ={}, dynamodb="dynamodb-local", charge_events=False) as stack:
        started = time.perf_counter()
        report = run_chaos(
            table=stack.env["PAYMENTS_TABLE"],
            dynamodb=boto3.client("dynamodb"),  # pointed at the stack by its environment
            simulator=stack.require_simulator(),
            charges=charges,
            seed=seed,
        )
        return report, time.perf_counter() - started


def print_report(report: ChaosReport, seed: int, elapsed: float) -> None:
    """The figures, then one JSON line with the same."""
    print(f"chaos scenario: {report.charges} charges, seed {seed}")
    print(f"  faults injected      {dict(sorted(report.faults.items()))}")
    print(f"  after create         {dict(sorted(report.after_create.items()))}")
    print(f"  after reconciliation {dict(sorted(report.final.items()))}")
    print(f"  charges per terminal        {dict(sorted(report.terminals.items()))}")
    print(f"  mismatches with the ledger  {len(report.mismatches)}")
    print(f"  non-final code, yet taken   {report.nonfinal_went_through}")
    print(f"  invoices authorised twice   {report.double_auths}")
    print(f"  NEEDS_REVIEW                {report.final.get('NEEDS_REVIEW', 0)}")
    print(f"  reconcile rounds            {report.rounds}")
    print(
        f"  time: create {report.create_seconds:.1f} s, reconcile {report.reconcile_seconds:.1f} s,"
        f" total {elapsed:.1f} s"
    )
    summary = {
        "charges": report.charges,
        "final": dict(report.final),
        "mismatches": len(report.mismatches),
        "nonfinal_went_through": report.nonfinal_went_through,
        "double_auths": report.double_auths,
        "rounds": report.rounds,
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(summary))


def main() -> int:
    """Run the scenario once and print its figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--charges", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_CHARGES} charges")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    charges = SMOKE_CHARGES if args.smoke else args.charges
    report, elapsed = run(charges, args.seed)
    print_report(report, args.seed, elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
