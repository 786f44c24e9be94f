"""The charge outbox in tests: the table's stream read from DynamoDB Local, shaped as Lambda's
DynamoDB event source would deliver it to ChargeEventsFunction (template filter applied)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

from local.template import load_template, resources_of_type
from local.workers import DynamoDBStreamReader, matches_filters, stream_records
from tests.integration.conftest import load_function

ROOT = Path(__file__).resolve().parents[2]


def template_filters() -> list[dict[str, Any]]:
    """The FilterCriteria patterns of ChargeEventsFunction's DynamoDB event in template.yaml."""
    functions = resources_of_type(
        load_template(ROOT / "template.yaml"), "AWS::Serverless::Function"
    )
    events = functions["ChargeEventsFunction"]["Properties"]["Events"]
    (source,) = [e["Properties"] for e in events.values() if e["Type"] == "DynamoDB"]
    return [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]


class ChargeOutbox:
    """Reads a test table's stream from its start and feeds the charge events handler."""

    def __init__(self, dynamodb: Any, dynamodb_endpoint: str, table: str) -> None:
        streams = boto3.client(
            "dynamodbstreams",
            endpoint_url=dynamodb_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.reader = DynamoDBStreamReader(dynamodb, streams, table, start_at="TRIM_HORIZON")
        self.filters = template_filters()
        self.module = load_function("charge_events")

    def records(self) -> list[dict[str, Any]]:
        """Every new stream record (Lambda's shape) that passes the template's filter."""
        records: list[dict[str, Any]] = []
        while batches := self.reader.read():  # GetRecords gives at most 100 at a time
            records += [
                record
                for _, raw in batches
                for record in stream_records(raw, self.reader.stream_arn)
                if matches_filters(record, self.filters)
            ]
        return records

    def deliver(self, records: list[dict[str, Any]]) -> list[str]:
        """Invoke the handler on a stream event; the failed records' sequence numbers."""
        from tests.integration.conftest import Context

        result = self.module.lambda_handler({"Records": records}, Context(60))
        return [f["itemIdentifier"] for f in result["batchItemFailures"]]

    def pump(self) -> int:
        """Deliver everything new (asserting no failures); how many records were delivered."""
        records = self.records()
        if records:
            assert self.deliver(records) == []
        return len(records)
