"""The chaos scenario at scale (default 2,000 charges): prints how every charge ended.

Not a test: it prints numbers. `make bench-chaos` or
`PYTHONPATH=layers/payments:. .venv/bin/python bench/chaos_bench.py --charges 3000 --seed 7`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "payments"), str(ROOT)]

from local.aws import create_resources  # noqa: E402
from local.chaos import run_chaos  # noqa: E402
from local.dynamodb_local import DynamoDBLocal  # noqa: E402
from local.epay_sim import EpaySimulator  # noqa: E402
from local.template import load_template  # noqa: E402


def main() -> None:
    """Run the scenario once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--charges", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261128)
    args = parser.parse_args()
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }.items():
        os.environ.setdefault(key, value)

    dynamodb_local = DynamoDBLocal().start()
    simulator = EpaySimulator(host="127.0.0.1", port=0).start()
    try:
        dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_local.url)
        table = _table_only(dynamodb)
        started = time.perf_counter()
        report = run_chaos(
            table=table,
            dynamodb=dynamodb,
            simulator=simulator,
            charges=args.charges,
            seed=args.seed,
        )
        elapsed = time.perf_counter() - started
    finally:
        simulator.stop()
        dynamodb_local.stop()

    print(f"chaos scenario: {report.charges} charges, seed {args.seed}")
    print(f"  faults injected      {dict(sorted(report.faults.items()))}")
    print(f"  after create         {dict(sorted(report.after_create.items()))}")
    print(f"  after reconciliation {dict(sorted(report.final.items()))}")
    print(f"  mismatches with the ledger  {len(report.mismatches)}")
    print(f"  invoices authorised twice   {report.double_auths}")
    print(f"  NEEDS_REVIEW                {report.final.get('NEEDS_REVIEW', 0)}")
    print(f"  reconcile rounds            {report.rounds}")
    print(
        f"  time: create {report.create_seconds:.1f} s, reconcile {report.reconcile_seconds:.1f} s,"
        f" total {elapsed:.1f} s"
    )
    print(
        json.dumps(
            {
                "charges": report.charges,
                "final": dict(report.final),
                "mismatches": len(report.mismatches),
                "double_auths": report.double_auths,
                "rounds": report.rounds,
                "seconds": round(elapsed, 1),
            }
        )
    )


def _table_only(dynamodb: object) -> str:
    template = load_template(ROOT / "template.yaml")
    template = {
        **template,
        "Resources": {"PaymentsTable": template["Resources"]["PaymentsTable"]},
    }
    return create_resources(template, {"dynamodb": dynamodb}, stack_name="chaos")["PaymentsTable"]


if __name__ == "__main__":
    main()
