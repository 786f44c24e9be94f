"""The chaos scenario at scale (default 2,000 charges, 40 card setups): prints how every charge,
refund and card setup ended.

Not a test: it prints numbers. The scenario (`local.chaos.run_chaos`) runs against the local stack
(`local.run.start_stack` on DynamoDB Local, with the ePay simulator). `make bench-chaos` or
`PYTHONPATH=layers/payments:. .venv/bin/python bench/chaos_bench.py --charges 3000 --setups 60
--seed 7`.
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
SMOKE_SETUPS = 4
MAX_SHOWN = 10  # mismatches printed one by one


def run(
    charges: int, seed: int, *, stop_3ds: bool = False, setups: int = 6
) -> tuple[ChaosReport, float]:
    """The scenario on a fresh local stack, and how long it took (seconds)."""
    with start_stack(
        0, environ={}, dynamodb="dynamodb-local", charge_events=False, events_feed=False
    ) as stack:
        started = time.perf_counter()
        report = run_chaos(
            table=stack.env["PAYMENTS_TABLE"],
            dynamodb=boto3.client("dynamodb"),  # pointed at the stack by its environment
            simulator=stack.require_simulator(),
            charges=charges,
            seed=seed,
            stop_3ds=stop_3ds,
            setups=setups,
        )
        return report, time.perf_counter() - started


def print_report(report: ChaosReport, seed: int, elapsed: float) -> None:
    """The figures, then one JSON line with the same."""
    print(f"chaos scenario: {report.charges} charges, {report.setups} card setups, seed {seed}")
    print(f"  faults injected      {dict(sorted(report.faults.items()))}")
    print(f"  after create         {dict(sorted(report.after_create.items()))}")
    print(f"  after reconciliation {dict(sorted(report.final.items()))}")
    print(f"  charges per terminal        {dict(sorted(report.terminals.items()))}")
    print(f"  mismatches with the ledger  {len(report.mismatches)}")
    print(f"  non-final code, yet taken   {report.nonfinal_went_through}")
    print(f"  invoices authorised twice   {report.double_auths}")
    print(f"  NEEDS_REVIEW                {report.final.get('NEEDS_REVIEW', 0)}")
    print(f"  voids sent, as answered     {dict(sorted(report.voids.items()))}")
    print(f"  voided charges, final       {dict(sorted(report.voids_final.items()))}")
    print(f"  refund plans                {dict(sorted(report.refund_plans.items()))}")
    print(f"  refunds, as answered        {dict(sorted(report.refunds_after_call.items()))}")
    print(f"  refunds, final              {dict(sorted(report.refunds_final.items()))}")
    print(f"  refund mismatches           {len(report.refund_mismatches)}")
    print(f"  NEEDS_REVIEW refunds        {report.refunds_needs_review}")
    print(
        f"  refunded: ours {report.refunded_ours}, ledger {report.refunded_ledger},"
        f" in review {report.refunded_in_review}"
    )
    print(f"  refunds sent twice          {report.refunds_sent_twice}")
    print(f"  externalIDs twice in ledger {report.ledger_refunds_twice}")
    print(f"  reconciler runs that raised {dict(report.reconcile_errors)}")
    print(f"  reconcile rounds            {report.rounds}")
    print(f"  card setups, mode:outcome   {dict(sorted(report.setup_plans.items()))}")
    print(f"  setup postLinks             {dict(sorted(report.setup_postlinks.items()))}")
    print(f"  setup postLinks, answered   {dict(sorted(report.setup_postlink_answers.items()))}")
    print(f"  setup faults                {dict(sorted(report.setup_faults.items()))}")
    print(f"  setups before reconciling   {dict(sorted(report.setups_before_reconcile.items()))}")
    print(f"  setups, final               {dict(sorted(report.setups_final.items()))}")
    print(f"  setup reconciler            {dict(sorted(report.setup_reconciler.items()))}")
    print(f"  cards saved by setups       {report.setup_cards}")
    print(f"  first payments, final       {dict(sorted(report.setup_charges_final.items()))}")
    print(f"  setup mismatches            {len(report.setup_mismatches)}")
    print(f"  setup reconcile rounds      {report.setup_rounds}")
    print(
        f"  time: create {report.create_seconds:.1f} s, voids and refunds"
        f" {report.refund_seconds:.1f} s, reconcile {report.reconcile_seconds:.1f} s,"
        f" card setups {report.setup_seconds:.1f} s, total {elapsed:.1f} s"
    )
    for invoice, ledger, ours in report.mismatches[:MAX_SHOWN]:
        print(f"  mismatch: invoice {invoice}: ledger {ledger}, ours {ours}")
    for what, problem in report.refund_mismatches[:MAX_SHOWN]:
        print(f"  refund mismatch: {what}: {problem}")
    for refund_id, why in report.refunds_in_review[:MAX_SHOWN]:
        print(f"  NEEDS_REVIEW refund {refund_id}: {why}")
    summary = {
        "charges": report.charges,
        "final": dict(report.final),
        "mismatches": len(report.mismatches),
        "nonfinal_went_through": report.nonfinal_went_through,
        "double_auths": report.double_auths,
        "voids": dict(report.voids),
        "voids_final": dict(report.voids_final),
        "refund_plans": dict(report.refund_plans),
        "refunds_after_call": dict(report.refunds_after_call),
        "refunds_final": dict(report.refunds_final),
        "refund_mismatches": len(report.refund_mismatches),
        "refunds_needs_review": report.refunds_needs_review,
        "refunded_ours": str(report.refunded_ours),
        "refunded_ledger": str(report.refunded_ledger),
        "refunded_in_review": str(report.refunded_in_review),
        "refunds_sent_twice": report.refunds_sent_twice,
        "ledger_refunds_twice": report.ledger_refunds_twice,
        "reconcile_errors": dict(report.reconcile_errors),
        "rounds": report.rounds,
        "setups": report.setups,
        "setup_plans": dict(report.setup_plans),
        "setup_postlinks": dict(report.setup_postlinks),
        "setup_postlink_answers": dict(report.setup_postlink_answers),
        "setup_faults": dict(report.setup_faults),
        "setups_before_reconcile": dict(report.setups_before_reconcile),
        "setups_final": dict(report.setups_final),
        "setup_reconciler": dict(report.setup_reconciler),
        "setup_cards": report.setup_cards,
        "setup_charges_final": dict(report.setup_charges_final),
        "setup_mismatches": len(report.setup_mismatches),
        "setup_rounds": report.setup_rounds,
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(summary))


def main() -> int:
    """Run the scenario once and print its figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--charges", type=int, default=2000)
    parser.add_argument("--setups", type=int, default=40, help="card setups (after the charges)")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_CHARGES} charges, {SMOKE_SETUPS} setups"
    )
    parser.add_argument(
        "--stop-3ds",
        action="store_true",
        help="also cancel charges waiting for 3-D Secure (never completed afterwards)",
    )
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    charges = SMOKE_CHARGES if args.smoke else args.charges
    setups = SMOKE_SETUPS if args.smoke else args.setups
    report, elapsed = run(charges, args.seed, stop_3ds=args.stop_3ds, setups=setups)
    print_report(report, args.seed, elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
