"""The local stack's stand-ins for EventBridge Scheduler and the SQS event source mapping.

* A thread invokes the renewal dispatcher's handler every ``period`` seconds with a scheduled
  event (the shape EventBridge sends), instead of the template's ``RenewalSchedule``.
* A thread long-polls the renewal queue (moto's SQS, or whatever ``AWS_ENDPOINT_URL`` points at),
  builds real SQS event records (``messageId``, ``receiptHandle``, ``body``, ``attributes``,
  ``messageAttributes``, ``md5OfBody``, ``eventSource``, ``eventSourceARN``, ``awsRegion``), invokes
  the worker's handler, deletes the records it did not report in ``batchItemFailures`` and leaves
  the others for SQS to redeliver (and, after ``maxReceiveCount``, to move to the DLQ).

* The reconciler: a thread invokes its handler every ``period`` seconds with a scheduled event
  (the tick, instead of ``ReconcileSchedule``), which sends one message per due shard to the
  reconcile queue (SQS FIFO); another long-polls that queue and runs one invocation per message as
  Lambda's FIFO event source does (``BatchSize: 1``): the message groups (shards) side by side, the
  messages of one group in order, a failed one (and the rest of its group) left for SQS to deliver
  again.

* A thread polls the payments table's DynamoDB stream (DynamoDB Local supports Streams; moto too):
  DescribeTable -> LatestStreamArn, DescribeStream -> shards, GetShardIterator (LATEST for the
  shards open at start, TRIM_HORIZON for shards that appear later), then GetRecords about every
  second following NextShardIterator. Records get the shape Lambda's DynamoDB event source gives
  (``eventID``, ``eventName``, ``eventVersion``, ``eventSource``, ``awsRegion``, ``dynamodb``,
  ``eventSourceARN``), are filtered with the template's ``FilterCriteria`` and handed to the charge
  events function (``ChargeEventsFunction``); failed records are retried once the shard is read
  again from the first failure.

Handlers are loaded from template.yaml's ``CodeUri``/``Handler`` like the local API Gateway does,
and run in this process with the environment the gateway applied, through
:func:`local.apigw.call_handler` (each invocation's log keys are its own: its ``function_name`` is
the function's logical id, as on the API's invocations). An idle loop is quiet: nothing is logged
for an empty tick, an empty poll or an empty stream read.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.apigw import LambdaContext, call_handler, load_handler
from local.template import resources_of_type

__all__ = [
    "ChargeEventWorker",
    "DynamoDBStreamReader",
    "Reconciliations",
    "RenewalWorkers",
    "matches_filters",
    "scheduled_event",
    "sqs_records",
    "stream_records",
]

logger = logging.getLogger("local.workers")

DISPATCHER_ID = "RenewalDispatcherFunction"
WORKER_ID = "RenewalWorkerFunction"
QUEUE_ID = "RenewalQueue"
CHARGE_EVENTS_ID = "ChargeEventsFunction"
RECONCILER_ID = "ReconcilerFunction"
RECONCILE_QUEUE_ID = "ReconcileQueue"
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
        context = LambdaContext(DISPATCHER_ID, 256, float(self._dispatcher["Timeout"]))
        return call_handler(handler, scheduled_event("local-RenewalDispatcherSchedule"), context)

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
        context = LambdaContext(WORKER_ID, 256, float(self._worker.get("Timeout", 150)))
        result = call_handler(handler, {"Records": records}, context)
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


# ------------------------------------------------------------------ the reconciler's fan-out


class Reconciliations:
    """Ticks the reconciler on a short period and runs its queue's units, shards side by side."""

    def __init__(
        self,
        template: Mapping[str, Any],
        base_dir: Path,
        sqs: Any,
        resource_names: Mapping[str, str],
        *,
        period: float = 30.0,
    ) -> None:
        functions = resources_of_type(template, "AWS::Serverless::Function")
        self._function = functions[RECONCILER_ID]["Properties"]
        self._base_dir = base_dir
        self._sqs = sqs
        self._queue_url = resource_names[RECONCILE_QUEUE_ID]
        self._queue_arn = resource_names[f"{RECONCILE_QUEUE_ID}.Arn"]
        self._period = period
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @staticmethod
    def available(template: Mapping[str, Any]) -> bool:
        """True when the template has the reconciler and its queue."""
        functions = resources_of_type(template, "AWS::Serverless::Function")
        queues = resources_of_type(template, "AWS::SQS::Queue")
        return RECONCILER_ID in functions and RECONCILE_QUEUE_ID in queues

    def start(self) -> Reconciliations:
        """Start the tick and the queue's poll (daemon threads)."""
        for name, target in (("tick", self._tick_loop), ("units", self._poll_loop)):
            thread = threading.Thread(target=target, name=f"local-reconciler-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("reconciler tick every %g s; its units from %s", self._period, self._queue_url)
        return self

    def stop(self) -> None:
        """Stop the loops (each ends within a poll)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=130)
        self._threads.clear()

    def _handler(self) -> Callable[[dict[str, Any], Any], Any]:
        handler: Callable[[dict[str, Any], Any], Any] = load_handler(
            self._function["CodeUri"], self._function["Handler"], self._base_dir
        )
        return handler

    def _context(self) -> LambdaContext:
        return LambdaContext(
            RECONCILER_ID,
            int(self._function.get("MemorySize", 256)),
            float(self._function.get("Timeout", 120)),
        )

    def tick_once(self) -> Any:
        """Invoke the reconciler with a scheduled event, as the schedule would (its tick)."""
        event = scheduled_event("local-ReconcilerFunctionSchedule")
        return call_handler(self._handler(), event, self._context())

    def deliver_once(self, wait_seconds: int = 1) -> int:
        """Receive the units there are (up to 20), run one invocation per unit, a thread per
        message group; how many were received."""
        messages: list[dict[str, Any]] = []
        while len(messages) < 20:
            answer = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0 if messages else wait_seconds,
                AttributeNames=["All"],
            )
            if not answer.get("Messages"):
                break
            messages.extend(answer["Messages"])
        groups: dict[str, list[dict[str, Any]]] = {}
        for message in messages:
            group = message.get("Attributes", {}).get("MessageGroupId", message["MessageId"])
            groups.setdefault(group, []).append(message)
        runs = [
            threading.Thread(target=self._run_group, args=(group,), name="local-reconciler-unit")
            for group in groups.values()
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        return len(messages)

    def _run_group(self, messages: list[dict[str, Any]]) -> None:
        """One group's messages in order, each its own invocation; a failure stops the group."""
        handler = self._handler()
        for message in messages:
            (record,) = sqs_records([message], self._queue_arn)
            try:
                result = call_handler(handler, {"Records": [record]}, self._context())
            except Exception:  # as Lambda: the message comes back after its visibility timeout
                logger.exception("reconciler unit failed")
                return
            if (result or {}).get("batchItemFailures"):
                return
            self._sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=record["receiptHandle"]
            )

    def _tick_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick_once()
            except Exception:  # a local loop must survive one bad tick; the error is shown
                logger.exception("reconciler tick failed")
            self._stop.wait(self._period)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_once()
            except Exception:  # keep polling; SQS delivers again what was not deleted
                logger.exception("reconciler units failed")
                self._stop.wait(1.0)


# ------------------------------------------------------------------ DynamoDB stream -> Lambda


def _lambda_attribute(value: Any) -> Any:
    """A typed attribute as Lambda's event JSON has it.

    Binary becomes base64 text (as AWS sends it), and an empty map, which DynamoDB Local's stream
    gives as ``{}`` (AWS: ``{"M": {}}``), gets its type back.
    """
    if not value:
        return {"M": {}}
    (kind, inner), *_ = value.items()
    if kind == "M":
        return {"M": {k: _lambda_attribute(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_lambda_attribute(v) for v in inner]}
    if kind == "B":
        return {"B": base64.b64encode(inner).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(v).decode("ascii") for v in inner]}
    return dict(value)


def _lambda_image(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _lambda_attribute(value) for name, value in image.items()}


def stream_records(records: list[dict[str, Any]], stream_arn: str) -> list[dict[str, Any]]:
    """Lambda's DynamoDB stream records for records returned by GetRecords."""
    shaped: list[dict[str, Any]] = []
    for record in records:
        change = dict(record["dynamodb"])
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        body = {
            key: _lambda_image(change[key])
            for key in ("Keys", "NewImage", "OldImage")
            if key in change
        }
        shaped.append(
            {
                "eventID": record["eventID"],
                "eventName": record["eventName"],
                "eventVersion": record.get("eventVersion") or "1.1",
                "eventSource": "aws:dynamodb",
                # DynamoDB Local says "ddblocal"; Lambda gives the table's region.
                "awsRegion": REGION,
                "dynamodb": {
                    "ApproximateCreationDateTime": change.get("ApproximateCreationDateTime"),
                    **body,
                    "SequenceNumber": change["SequenceNumber"],
                    "SizeBytes": change.get("SizeBytes", 0),
                    "StreamViewType": change.get("StreamViewType", "NEW_AND_OLD_IMAGES"),
                },
                "eventSourceARN": stream_arn,
            }
        )
    return shaped


def _matches(pattern: Any, value: Any) -> bool:
    if isinstance(pattern, Mapping):
        if not isinstance(value, Mapping):
            return False
        return all(key in value and _matches(sub, value[key]) for key, sub in pattern.items())
    if isinstance(pattern, list):  # allowed values: exact ones, or {"prefix": "..."}
        return any(_allows(allowed, value) for allowed in pattern)
    return bool(pattern == value)


def _allows(allowed: Any, value: Any) -> bool:
    if isinstance(allowed, Mapping) and set(allowed) == {"prefix"}:
        return isinstance(value, str) and value.startswith(str(allowed["prefix"]))
    return bool(allowed == value)


def matches_filters(record: Mapping[str, Any], patterns: list[Mapping[str, Any]]) -> bool:
    """True when the record matches one of the event source's filter patterns (none: all pass).

    The subset of Lambda's filter syntax the template uses: nested keys, lists of exact values
    and `{"prefix": ...}`.
    """
    return not patterns or any(_matches(pattern, record) for pattern in patterns)


class DynamoDBStreamReader:
    """Reads a table's stream shard by shard, remembering where each shard was left."""

    def __init__(
        self, dynamodb: Any, streams: Any, table_name: str, *, start_at: str = "LATEST"
    ) -> None:
        self._streams = streams
        self.stream_arn = str(
            dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        )
        self._iterators: dict[str, str | None] = {}
        for shard_id in self._shard_ids():
            self._iterators[shard_id] = self._iterator(shard_id, start_at)

    def _shard_ids(self) -> list[str]:
        description = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return [shard["ShardId"] for shard in description.get("Shards", [])]

    def _iterator(self, shard_id: str, iterator_type: str, **position: str) -> str:
        return str(
            self._streams.get_shard_iterator(
                StreamArn=self.stream_arn,
                ShardId=shard_id,
                ShardIteratorType=iterator_type,
                **position,
            )["ShardIterator"]
        )

    def read(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """New records since the last read, per shard (shard id, raw GetRecords records)."""
        for shard_id in self._shard_ids():
            if shard_id not in self._iterators:  # a shard that appeared since: read it all
                self._iterators[shard_id] = self._iterator(shard_id, "TRIM_HORIZON")
        batches: list[tuple[str, list[dict[str, Any]]]] = []
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue  # closed and read to its end
            answer = self._streams.get_records(ShardIterator=iterator, Limit=100)
            self._iterators[shard_id] = answer.get("NextShardIterator")
            if answer.get("Records"):
                batches.append((shard_id, answer["Records"]))
        return batches

    def rewind(self, shard_id: str, sequence_number: str) -> None:
        """Read `shard_id` again from `sequence_number` (a failed record, as Lambda retries)."""
        self._iterators[shard_id] = self._iterator(
            shard_id, "AT_SEQUENCE_NUMBER", SequenceNumber=sequence_number
        )


def _stream_event_source(function: Mapping[str, Any]) -> Mapping[str, Any]:
    for event in (function.get("Events") or {}).values():
        if event.get("Type") == "DynamoDB":
            return dict(event.get("Properties") or {})
    return {}


class ChargeEventWorker:
    """Feeds the charge events function from the payments table's stream, as Lambda would."""

    def __init__(
        self,
        template: Mapping[str, Any],
        base_dir: Path,
        dynamodb: Any,
        streams: Any,
        table_name: str,
        *,
        start_at: str = "LATEST",
        period: float = 1.0,
    ) -> None:
        functions = resources_of_type(template, "AWS::Serverless::Function")
        self._function = functions[CHARGE_EVENTS_ID]["Properties"]
        source = _stream_event_source(self._function)
        self._patterns = [
            json.loads(f["Pattern"])
            for f in (source.get("FilterCriteria") or {}).get("Filters", [])
        ]
        self._base_dir = base_dir
        self._reader = DynamoDBStreamReader(dynamodb, streams, table_name, start_at=start_at)
        self._period = period
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def available(template: Mapping[str, Any]) -> bool:
        """True when the template has the charge events function on a DynamoDB stream."""
        functions = resources_of_type(template, "AWS::Serverless::Function")
        function = functions.get(CHARGE_EVENTS_ID)
        return function is not None and bool(_stream_event_source(function["Properties"]))

    @property
    def stream_arn(self) -> str:
        """The table's stream (the records' eventSourceARN)."""
        return self._reader.stream_arn

    def start(self) -> ChargeEventWorker:
        """Start polling (a daemon thread)."""
        self._thread = threading.Thread(target=self._loop, name="local-charge-events", daemon=True)
        self._thread.start()
        logger.info("charge events function polling the stream %s", self.stream_arn)
        return self

    def stop(self) -> None:
        """Stop polling (ends within a poll)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def deliver_once(self, handler: Callable[[dict[str, Any], Any], Any] | None = None) -> int:
        """Read new stream records and invoke the function on those the filter passes.

        Returns how many records were delivered. A shard with failed records is read again from
        its first failure on the next call.
        """
        invoke = handler or load_handler(
            self._function["CodeUri"], self._function["Handler"], self._base_dir
        )
        delivered = 0
        for shard_id, raw in self._reader.read():
            records = [
                r
                for r in stream_records(raw, self.stream_arn)
                if matches_filters(r, self._patterns)
            ]
            if not records:
                continue
            context = LambdaContext(CHARGE_EVENTS_ID, 256, float(self._function.get("Timeout", 60)))
            result = call_handler(invoke, {"Records": records}, context)
            failed = [f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])]
            delivered += len(records)
            if failed:
                self._reader.rewind(shard_id, min(failed, key=int))
        return delivered

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_once()
            except Exception:  # keep polling; the failed shard is read again
                logger.exception("charge events batch failed")
            self._stop.wait(self._period)
