"""`make run` renews subscriptions: the local dispatcher loop and SQS poller drive the real
handlers against moto's SQS, so a subscription due now is charged within seconds."""

from __future__ import annotations

import json
import time
import uuid

import urllib3

from local.run import APPROVED_TEST_CARD_ID, start_stack


def test_local_stack_renews_a_due_subscription() -> None:
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=20))
    # Given the whole local stack with the dispatcher running every half second
    with start_stack(0, environ={}, dynamodb="auto", renewal_period=0.5) as stack:
        # When a subscription starting now is created over HTTP
        created = http.request(
            "POST",
            f"{stack.url}/subscriptions",
            body=json.dumps(
                {
                    "accountId": "customer-local",
                    "cardId": APPROVED_TEST_CARD_ID,
                    "amount": 990.00,
                    "currency": "KZT",
                    "description": "Local plan",
                    "interval": {"unit": "day", "count": 1},
                }
            ),
            headers={"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
        )
        assert created.status == 201, created.data
        sub_id = json.loads(created.data)["id"]
        # Then, within seconds, the dispatcher and the worker have charged its first cycle
        state: dict[str, object] = {}
        for _ in range(60):
            answer = http.request("GET", f"{stack.url}/subscriptions/{sub_id}")
            state = json.loads(answer.data)
            if state["paidCycles"] == 1:
                break
            time.sleep(0.25)
        assert state["paidCycles"] == 1
        assert state["status"] == "ACTIVE"
        assert state["currentCycle"] == 1
        assert stack.simulator is not None
        assert [e.op for e in stack.simulator.journal].count("auth") == 1
