"""tests/integration/iam_check.py refuses what template.yaml's statements do not allow (the tier's
IAM check must be able to fail)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.stub import Stubber

from tests.integration import iam_check

KEY = {"pk": {"S": "CHARGE#ch_" + "0" * 32}, "sk": {"S": "CHARGE"}}


def test_a_request_the_statements_allow_passes() -> None:
    # Given the 3-D Secure function's statements / When it updates a charge item / Then allowed
    assert iam_check.problems("ThreeDSFunction", "UpdateItem", {"Key": KEY}) == []
    # And the renewal worker's key lookup (a BatchGetItem) is allowed too
    batch = {"RequestItems": {"t": {"Keys": [KEY, {"pk": {"S": "IDEMPOTENCY#k"}}]}}}
    assert iam_check.problems("RenewalWorkerFunction", "BatchGetItem", batch) == []


def test_a_request_outside_the_statements_is_refused() -> None:
    # Given the 3-D Secure function (a public one: charge items only, never a scan or a delete)
    # When it would read an idempotency item, scan, or delete a charge / Then each is refused
    other = {"Key": {"pk": {"S": "IDEMPOTENCY#k"}, "sk": {"S": "IDEMPOTENCY"}}}
    assert iam_check.problems("ThreeDSFunction", "GetItem", other)
    assert iam_check.problems("ThreeDSFunction", "Scan", {})
    assert iam_check.problems("ThreeDSFunction", "DeleteItem", {"Key": KEY})
    # And a transaction's items are each held to their own action (a Put where only Update is
    # allowed on POSTLINKS#)
    put = {"TransactItems": [{"Put": {"Item": {"pk": {"S": "POSTLINKS#000001"}}}}]}
    assert iam_check.problems("PostLinkFunction", "TransactWriteItems", put)


def test_requests_from_a_handlers_thread_pool_are_checked_as_that_functions() -> None:
    # Given a handler (the 3-D Secure function's) that hands its DynamoDB work to a thread pool,
    # as the reconciler and the renewal dispatcher do, on a client that never reaches the network
    client = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).client("dynamodb")

    def handler(_event: Any, _context: Any) -> None:
        with Stubber(client) as stubber, ThreadPoolExecutor(max_workers=2) as pool:
            stubber.add_response("scan", {"Items": []}, {"TableName": "payments"})
            pool.submit(client.scan, TableName="payments").result()

    before = len(iam_check.VIOLATIONS)

    # When the handler runs under the check
    try:
        iam_check.checked(handler, "threeds")({}, None)
        found = iam_check.VIOLATIONS[before:]
    finally:
        del iam_check.VIOLATIONS[before:]  # this test's own, expected refusal

    # Then the pool thread's Scan is refused as the 3-D Secure function's
    assert found == ["ThreeDSFunction: dynamodb:Scan on table with keys [] is not allowed"]
