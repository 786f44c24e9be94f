"""Partial batch responses for SQS and DynamoDB stream invocations (ReportBatchItemFailures).

Each record is handled alone: one that raises is logged and reported in `batchItemFailures`, so
Lambda retries it (SQS: that message; a stream: from that record on) and the others are not
repeated needlessly. Powertools' batch utility does the same, but importing it costs about 70 ms
of every cold start (asyncio and every event data class, docs/decisions.md); this is the part the
two consumers use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from payments.observability import logger

Record = Mapping[str, Any]
BatchResponse = dict[str, list[dict[str, str]]]


def process_sqs(event: Mapping[str, Any], handle: Callable[[Record], object]) -> BatchResponse:
    """Handle every SQS record; failures are identified by messageId."""
    return _process(event, handle, lambda record: str(record["messageId"]))


def process_stream(event: Mapping[str, Any], handle: Callable[[Record], object]) -> BatchResponse:
    """Handle every DynamoDB stream record; failures are identified by sequence number."""
    return _process(event, handle, lambda record: str(record["dynamodb"]["SequenceNumber"]))


def _process(
    event: Mapping[str, Any], handle: Callable[[Record], object], identify: Callable[[Record], str]
) -> BatchResponse:
    failures: list[dict[str, str]] = []
    for record in event.get("Records") or []:
        try:
            handle(record)
        except Exception as exc:
            item = identify(record)
            logger.exception("record failed", extra={"item": item, "error": type(exc).__name__})
            failures.append({"itemIdentifier": item})
    return {"batchItemFailures": failures}
