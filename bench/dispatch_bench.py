"""Renewal dispatcher throughput against moto (a benchmark, not a test; prints numbers only).

Seeds subscriptions that are all due into a table made from template.yaml (moto's threaded
server over loopback HTTP, like the local stack), then times the real dispatcher code path
(`Renewals.dispatch_shard`: a RenewalDueIndex query page, one conditional UpdateItem lease per
subscription, SendMessageBatch per ten) shard by shard, and the whole run with one thread per
shard. From the per-shard rate it derives how many shards dispatch 1,000,000 due subscriptions
inside one 15-minute window, shards running in parallel.

    PYTHONPATH=layers/payments:. .venv/bin/python bench/dispatch_bench.py [--per-shard 500]
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "payments"), str(ROOT)]

from local.aws import create_resources  # noqa: E402
from local.dynamodb_local import free_port  # noqa: E402
from local.template import load_template  # noqa: E402
from payments.aws.charge_store import _ser
from payments.aws.sqs import SqsRenewalQueue
from payments.aws.subscription_store import DynamoSubscriptionStore, subscription_to_item
from payments.shared.deadline import Deadline
from payments.subscriptions.calendar import BillingInterval, Interval
from payments.subscriptions.model import (
    RENEWAL_SHARDS,
    Subscription,
    SubscriptionStatus,
    renewal_shard,
)
from payments.subscriptions.policy import RenewalPolicy
from payments.subscriptions.renewals import Renewals

NOW = datetime(2027, 1, 31, 9, tzinfo=UTC)
TARGET = 1_000_000
WINDOW_SECONDS = 15 * 60


def seed(dynamodb: object, table: str, per_shard: int) -> int:
    """Write `per_shard` due subscriptions into every shard (BatchWriteItem, 25 at a time)."""
    counts = [0] * RENEWAL_SHARDS
    batch: list[dict[str, object]] = []
    n = 0
    while min(counts) < per_shard:
        sub_id = f"sub_{n:032x}"
        n += 1
        shard = renewal_shard(sub_id)
        if counts[shard] >= per_shard:
            continue
        counts[shard] += 1
        sub = Subscription(
            id=sub_id,
            account_id=f"acct-{n}",
            card_id="c0000000-0000-4000-8000-000000000001",
            amount=Decimal("990.00"),
            currency="KZT",
            description="bench",
            interval=BillingInterval(Interval.MONTH, 1),
            anchor=NOW - timedelta(minutes=n % 600),
            status=SubscriptionStatus.ACTIVE,
            idempotency_key=f"k{n}",
            request_hash="h",
            created_at=NOW,
            updated_at=NOW,
            renew_at=NOW - timedelta(minutes=n % 600),
        )
        batch.append({"PutRequest": {"Item": _ser(subscription_to_item(sub))}})
        if len(batch) == 25:
            dynamodb.batch_write_item(RequestItems={table: batch})  # type: ignore[attr-defined]
            batch = []
    if batch:
        dynamodb.batch_write_item(RequestItems={table: batch})  # type: ignore[attr-defined]
    return sum(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-shard", type=int, default=60, help="due subscriptions per shard")
    parser.add_argument("--shards-timed", type=int, default=4, help="shards timed one by one")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
        )
        url = f"http://127.0.0.1:{port}"
        services = ("dynamodb", "secretsmanager", "sqs", "events")
        clients = {s: session.client(s, endpoint_url=url) for s in services}
        names = create_resources(load_template(ROOT / "template.yaml"), clients, stack_name="bench")
        table, queue_url = names["PaymentsTable"], names["RenewalQueue"]
        store = DynamoSubscriptionStore(table, clients["dynamodb"])
        renewals = Renewals(
            store=store,
            queue=SqsRenewalQueue(clients["sqs"], queue_url),
            charges=None,  # type: ignore[arg-type]  (dispatch never charges)
            events=None,  # type: ignore[arg-type]
            policy=RenewalPolicy(),
            clock=lambda: NOW,
            parallelism=RENEWAL_SHARDS,
        )
        started = time.perf_counter()
        seeded = seed(clients["dynamodb"], table, args.per_shard)
        seed_seconds = time.perf_counter() - started

        rates = []
        for shard in range(args.shards_timed):
            t0 = time.perf_counter()
            enqueued, skipped = renewals.dispatch_shard(shard, NOW, Deadline.after(600))
            elapsed = time.perf_counter() - t0
            assert enqueued == args.per_shard, enqueued
            assert skipped == 0, skipped
            rates.append(enqueued / elapsed)

        t0 = time.perf_counter()
        report = renewals.dispatch(Deadline.after(600))
        whole_seconds = time.perf_counter() - t0
        remaining = args.per_shard * (RENEWAL_SHARDS - args.shards_timed)
        assert report.enqueued == remaining, (report.enqueued, remaining)
        again = renewals.dispatch(Deadline.after(600))

        per_shard = statistics.median(rates)
        needed_rate = TARGET / WINDOW_SECONDS
        shards_needed = math.ceil(needed_rate / per_shard)
        print(f"seeded_subscriptions {seeded} ({seed_seconds:.1f} s)")
        print(f"per_shard_rate_median {per_shard:.0f} /s (shards timed: {len(rates)}, "
              f"min {min(rates):.0f}, max {max(rates):.0f})")  # fmt: skip
        parallel = report.enqueued / whole_seconds
        detail = f"{report.enqueued} in {whole_seconds:.2f} s, {RENEWAL_SHARDS} threads"
        print(f"all_shards_parallel_rate {parallel:.0f} /s ({detail})")
        print(f"second_run_enqueued {again.enqueued}")
        print(f"needed_rate_for_1M_in_15min {needed_rate:.0f} /s")
        print(f"shards_needed_at_measured_rate {shards_needed}")
        print(f"configured_shards {RENEWAL_SHARDS}")
        print(f"time_for_1M_with_{RENEWAL_SHARDS}_shards_at_measured_rate "
              f"{TARGET / (per_shard * RENEWAL_SHARDS) / 60:.1f} min")  # fmt: skip
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
