"""The local stack's stand-ins for EventBridge Scheduler and the SQS event source mapping.

* A thread invokes the renewal dispatcher's handler every ``period`` seconds with a scheduled
  event (the shape EventBridge sends), instead of the template's ``RenewalSchedule``.
* A thread long-polls the renewal queue (moto's SQS, or whatever ``AWS_ENDPOINT_URL`` points at),
  builds real SQS event records (``messageId``, ``receiptHandle``, ``body``, ``attributes``,
  ``messageAttributes``, ``md5OfBody``, ``eventSource``, ``eventSourceARN``, ``awsRegion``), invokes
  the worker's handler, deletes the records it did not report in ``batchItemFailures`` and leaves
  the others for SQS to redeliver (and, after ``maxReceiveCount``, to move to the DLQ).

Handlers are loaded from template.yaml's ``CodeUri``/``Handler`` like the local API Gateway does,
and run in this process with the environment the gateway applied.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.apigw import LambdaContext, load_handler
from local.template import resources_of_type

__all__ = ["RenewalWorkers", "scheduled_event", "sqs_records"]

logger = logging.getLogger("local.workers")

DISPATCHER_ID = "RenewalDispatcherFunction"
WORKER_ID = "RenewalWorkerFunction"
QUEUE_ID = "RenewalQueue"
REGION = "us-east-1"
ACCOUNT = "000000000000"


def scheduled_event(rule: str) -> dict[str, Any]:
    """An EventBridge "Scheduled Event" for ``rule``."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }


def sqs_records(messages: list[dict[str, Any]], queue_arn: str) -> list[dict[str, Any]]:
    """Lambda's SQS records for messages returned by ReceiveMessage."""
    return [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value["DataType"],
                }
                for name, value in (m.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION,
        }
        for m in messages
    ]


class RenewalWorkers:
    """Runs the dispatcher on a short period and feeds the worker from the renewal queue."""

    def __init__(
        self,
        template: Mapping[str, Any],
        base_dir: Path,
        sqs: Any,
        resource_names: Mapping[str, str],
        *,
        period: float = 10.0,
    ) -> None:
        functions = resources_of_type(template, "AWS::Serverless::Function")
        self._dispatcher = functions[DISPATCHER_ID]["Properties"]
        self._worker = functions[WORKER_ID]["Properties"]
        self._base_dir = base_dir
        self._sqs = sqs
        self._queue_url = resource_names[QUEUE_ID]
        self._queue_arn = resource_names[f"{QUEUE_ID}.Arn"]
        self._period = period
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @staticmethod
    def available(template: Mapping[str, Any]) -> bool:
        """True when the template has the dispatcher, the worker and the queue."""
        functions = resources_of_type(template, "AWS::Serverless::Function")
        queues = resources_of_type(template, "AWS::SQS::Queue")
        return DISPATCHER_ID in functions and WORKER_ID in functions and QUEUE_ID in queues

    def start(self) -> RenewalWorkers:
        """Start both loops (daemon threads)."""
        for name, target in (("dispatcher", self._dispatch_loop), ("worker", self._poll_loop)):
            thread = threading.Thread(target=target, name=f"local-renewal-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info(
            "renewal dispatcher every %.0f s; renewal worker polling %s", self._period, self._url
        )
        return self

    @property
    def _url(self) -> str:
        return self._queue_url

    def stop(self) -> None:
        """Stop the loops (each ends within a poll)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def dispatch_once(self) -> Any:
        """Invoke the dispatcher's handler once, as the schedule would."""
        handler = load_handler(
            self._dispatcher["CodeUri"], self._dispatcher["Handler"], self._base_dir
        )
        context = LambdaContext("renewal-dispatcher", 256, float(self._dispatcher["Timeout"]))
        return handler(scheduled_event("local-RenewalDispatcherSchedule"), context)

    def deliver_once(self, wait_seconds: int = 1) -> int:
        """Receive up to 5 messages, run the worker on them; how many were received."""
        answer = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=5,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        records = sqs_records(messages, self._queue_arn)
        handler = load_handler(self._worker["CodeUri"], self._worker["Handler"], self._base_dir)
        context = LambdaContext("renewal-worker", 256, 150.0)
        result = handler({"Records": records}, context)
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        for record in records:
            if record["messageId"] not in failed:
                self._sqs.delete_message(
                    QueueUrl=self._queue_url, ReceiptHandle=record["receiptHandle"]
                )
        return len(records)

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                summary = self.dispatch_once()
                if summary and summary.get("enqueued"):
                    logger.info("renewal dispatcher enqueued %s cycle(s)", summary["enqueued"])
            except Exception:  # a local loop must survive one bad run; the error is shown
                logger.exception("renewal dispatcher run failed")
            self._stop.wait(self._period)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_once()
            except Exception:  # keep polling; SQS redelivers what was not deleted
                logger.exception("renewal worker batch failed")
                self._stop.wait(1.0)
