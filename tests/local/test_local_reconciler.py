"""`make run` reconciles: the local tick sends one unit per due shard to the reconcile queue (moto's
SQS FIFO) and the local event source runs each unit, so an UNKNOWN charge due for its check is
settled within seconds, through the real handler."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import urllib3

from local.run import APPROVED_TEST_CARD_ID, start_stack


def test_local_stack_reconciles_an_unknown_charge() -> None:
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=20))
    # Given the whole local stack with the reconciler ticking every half second
    with start_stack(0, environ={}, dynamodb="auto", reconcile_period=0.5) as stack:
        # And a charge whose auth answer broke after ePay took it (UNKNOWN)
        stack.require_simulator().inject("auth", "broken_body")
        created = http.request(
            "POST",
            f"{stack.url}/charges",
            body=json.dumps(
                {
                    "amount": 1500.00,
                    "currency": "KZT",
                    "cardId": APPROVED_TEST_CARD_ID,
                    "accountId": "customer-local",
                    "description": "Local order",
                }
            ),
            headers={"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
        )
        charge = json.loads(created.data)
        assert charge["status"] == "UNKNOWN", charge
        # When its first check comes due (moved into the past rather than waiting a minute)
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=stack.dynamodb_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        dynamodb.update_item(
            TableName=stack.env["PAYMENTS_TABLE"],
            Key={"pk": {"S": f"CHARGE#{charge['id']}"}, "sk": {"S": "CHARGE"}},
            UpdateExpression="SET nextCheckAt = :past",
            ExpressionAttributeValues={":past": {"S": "2000-01-01T00:00:00.000Z"}},
        )
        # Then, within seconds, a tick and its shard's unit have settled it from ePay's status
        state: dict[str, object] = {}
        for _ in range(80):
            state = json.loads(http.request("GET", f"{stack.url}/charges/{charge['id']}").data)
            if state["status"] == "CAPTURED":
                break
            time.sleep(0.25)
        assert state["status"] == "CAPTURED"
        # And the auth was never sent again
        assert [e.op for e in stack.require_simulator().journal].count("auth") == 1
