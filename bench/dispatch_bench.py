"""Renewal dispatcher throughput on the local stack (a benchmark, not a test; prints numbers only).

Starts the local stack (`local.run.start_stack`: DynamoDB Local, moto's threaded server for SQS,
the table and queue from template.yaml, the functions' environment), seeds subscriptions that are
all due, then times the dispatcher as the bootstrap wires it (`bootstrap.renewals()`: a
RenewalDueIndex page, one conditional UpdateItem lease per subscription, SendMessageBatch per ten)
shard by shard, and the whole run with one thread per shard. From the per-shard rate it derives
how many shards dispatch 1,000,000 due subscriptions inside one 15-minute window, shards running in
parallel.

    PYTHONPATH=layers/payments:. .venv/bin/python bench/dispatch_bench.py [--per-shard 500]
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3

from local.run import APPROVED_TEST_CARD_ID, start_stack
from payments import bootstrap
from payments.aws.dynamo import to_attributes
from payments.aws.subscription_store import subscription_to_item
from payments.errors import PaymentsError
from payments.shared.deadline import Deadline
from payments.subscriptions.calendar import BillingInterval, Interval
from payments.subscriptions.model import (
    RENEWAL_SHARDS,
    Subscription,
    SubscriptionStatus,
    renewal_shard,
)
from payments.subscriptions.renewals import Renewals

NOW = datetime(2027, 1, 31, 9, tzinfo=UTC)
TARGET = 1_000_000
WINDOW_SECONDS = 15 * 60
BATCH = 25  # BatchWriteItem's limit


@dataclass(frozen=True)
class Measured:
    """What one bench run saw (`parallel_error`: why the all-shards run stopped, if it did)."""

    seeded: int
    seed_seconds: float
    shard_rates: list[float]
    parallel_enqueued: int
    parallel_seconds: float
    parallel_error: str | None
    second_run_enqueued: int | None


def due_subscription(n: int, sub_id: str) -> Subscription:
    """A monthly subscription due before NOW (spread over the last ten hours)."""
    due = NOW - timedelta(minutes=n % 600)
    return Subscription(
        id=sub_id,
        account_id=f"acct-{n}",
        card_id=APPROVED_TEST_CARD_ID,
        amount=Decimal("990.00"),
        currency="KZT",
        description="bench",
        interval=BillingInterval(Interval.MONTH, 1),
        anchor=due,
        status=SubscriptionStatus.ACTIVE,
        idempotency_key=f"k{n}",
        request_hash="h",
        created_at=NOW,
        updated_at=NOW,
        renew_at=due,
    )


def seed(dynamodb: Any, table: str, per_shard: int) -> int:
    """Write `per_shard` due subscriptions into every shard (BatchWriteItem, 25 at a time)."""
    counts = [0] * RENEWAL_SHARDS
    batch: list[dict[str, Any]] = []
    n = 0
    while min(counts) < per_shard:
        sub_id = f"sub_{n:032x}"
        n += 1
        shard = renewal_shard(sub_id)
        if counts[shard] >= per_shard:
            continue
        counts[shard] += 1
        item = to_attributes(subscription_to_item(due_subscription(n, sub_id)))
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == BATCH:
            dynamodb.batch_write_item(RequestItems={table: batch})
            batch = []
    if batch:
        dynamodb.batch_write_item(RequestItems={table: batch})
    return sum(counts)


def time_shards(renewals: Renewals, shards: int, per_shard: int) -> list[float]:
    """Dispatch the first `shards` shards one by one; the rate of each (subscriptions/s)."""
    rates = []
    for shard in range(shards):
        started = time.perf_counter()
        enqueued, skipped = renewals.dispatch_shard(shard, NOW, Deadline.after(600))
        elapsed = time.perf_counter() - started
        if (enqueued, skipped) != (per_shard, 0):
            raise RuntimeError(f"shard {shard}: enqueued {enqueued}, skipped {skipped}")
        rates.append(enqueued / elapsed)
    return rates


def time_all_shards(renewals: Renewals, expected: int) -> tuple[int, float, str | None]:
    """Dispatch every shard at once, as the scheduled run does: enqueued, seconds, error.

    The bootstrap's clients give up after a 5 s read timeout; an emulator that cannot answer 64
    threads that fast ends the run with the layer's error, which is reported, not raised.
    """
    started = time.perf_counter()
    try:
        whole = renewals.dispatch(Deadline.after(600))
    except PaymentsError as error:
        return 0, time.perf_counter() - started, f"{type(error).__name__}: {error}"
    if whole.enqueued != expected:
        raise RuntimeError(f"all shards: enqueued {whole.enqueued}, expected {expected}")
    return whole.enqueued, time.perf_counter() - started, None


def run(per_shard: int, shards_timed: int) -> Measured:
    """Seed, then time shard by shard, then all remaining shards at once, then once more."""
    with start_stack(
        0, environ={}, dynamodb="dynamodb-local", charge_events=False, events_feed=False
    ) as stack:
        bootstrap.use_clock(lambda: NOW)
        dynamodb = boto3.client("dynamodb")  # pointed at the stack by its environment
        started = time.perf_counter()
        seeded = seed(dynamodb, stack.env["PAYMENTS_TABLE"], per_shard)
        seed_seconds = time.perf_counter() - started
        renewals = bootstrap.renewals()
        rates = time_shards(renewals, shards_timed, per_shard)
        remaining = per_shard * (RENEWAL_SHARDS - shards_timed)
        enqueued, seconds, error = time_all_shards(renewals, remaining)
        again = None if error else renewals.dispatch(Deadline.after(600)).enqueued
    return Measured(seeded, seed_seconds, rates, enqueued, seconds, error, again)


def report(measured: Measured) -> None:
    """Print the figures, one per line."""
    rates = measured.shard_rates
    per_shard = statistics.median(rates)
    needed_rate = TARGET / WINDOW_SECONDS
    minutes = TARGET / (per_shard * RENEWAL_SHARDS) / 60
    print(f"seeded_subscriptions {measured.seeded} ({measured.seed_seconds:.1f} s)")
    print(
        f"per_shard_rate_median {per_shard:.0f} /s (shards timed: {len(rates)}, "
        f"min {min(rates):.0f}, max {max(rates):.0f})"
    )
    if measured.parallel_error is None:
        parallel = measured.parallel_enqueued / measured.parallel_seconds
        detail = f"{measured.parallel_enqueued} in {measured.parallel_seconds:.2f} s"
        print(f"all_shards_parallel_rate {parallel:.0f} /s ({detail}, {RENEWAL_SHARDS} threads)")
        print(f"second_run_enqueued {measured.second_run_enqueued}")
    else:
        print(
            f"all_shards_parallel_rate unavailable: stopped after "
            f"{measured.parallel_seconds:.0f} s by {measured.parallel_error}"
        )
    print(f"needed_rate_for_1M_in_15min {needed_rate:.0f} /s")
    print(f"shards_needed_at_measured_rate {math.ceil(needed_rate / per_shard)}")
    print(f"configured_shards {RENEWAL_SHARDS}")
    print(f"time_for_1M_with_{RENEWAL_SHARDS}_shards_at_measured_rate {minutes:.1f} min")


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-shard", type=int, default=60, help="due subscriptions per shard")
    parser.add_argument("--shards-timed", type=int, default=4, help="shards timed one by one")
    parser.add_argument("--smoke", action="store_true", help="one subscription per shard")
    args = parser.parse_args()
    per_shard, shards_timed = (1, 1) if args.smoke else (args.per_shard, args.shards_timed)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    report(run(per_shard, shards_timed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
