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
  DescribeTable -> LatestStreamArn, DescribeStream -> shards (again every few seconds, for new
  ones), GetShardIterator (LATEST for the shards open at start, TRIM_HORIZON for shards that
  appear later), then GetRecords (up to 1,000 records) once per ``MaximumBatchingWindowInSeconds``
  (1 s when the template gives none) following NextShardIterator. Records get the shape Lambda's
  DynamoDB event source gives (``eventID``, ``eventName``, ``eventVersion``, ``eventSource``,
  ``awsRegion``, ``dynamodb``, ``eventSourceARN``), are filtered with the template's
  ``FilterCriteria`` and handed to the charge events function (``ChargeEventsFunction``) in
  batches of at most the template's ``BatchSize``, a shard's batches in order. A failed record
  (``batchItemFailures``) or a batch whose invocation raised is read again on the next poll, from
  the first failure on; after ``MaximumRetryAttempts`` the batch is given up (logged) as Lambda
  gives it to the on-failure destination.

  With credentials (the stack passes its own), GetRecords goes out as a plain signed HTTP request
  (:class:`RawGetRecords`) and its JSON is used as is: Lambda's stream event carries the same
  attribute-value JSON as GetRecords' wire answer (``B`` as base64 text, ``N`` as text), so
  botocore's parsing of both images (and turning them back into JSON) is skipped. Only what
  DynamoDB Local says differently is rewritten: its empty map ``{}`` (AWS: ``{"M": {}}``), its
  region ``ddblocal`` and a fractional ``ApproximateCreationDateTime``.

Handlers are loaded from template.yaml's ``CodeUri``/``Handler`` like the local API Gateway does,
and run in this process with the environment the gateway applied, through
:func:`local.apigw.call_handler` (each invocation's log keys are its own: its ``function_name`` is
the function's logical id, as on the API's invocations). An idle loop is quiet: nothing is logged
for an empty tick, an empty poll or an empty stream read.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from local.apigw import LambdaContext, call_handler, load_handler
from local.template import resources_of_type

if TYPE_CHECKING:
    from local.apigw.pool import HandlerPool

__all__ = [
    "ChargeEventWorker",
    "DynamoDBStreamReader",
    "RawGetRecords",
    "Reconciliations",
    "RenewalWorkers",
    "lambda_stream_records",
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


def _load(
    pool: HandlerPool | None, function: Mapping[str, Any], base_dir: Path
) -> Callable[[dict[str, Any], Any], Any]:
    """The function's handler: loaded here, or a stand-in that runs it in the pool's workers
    (``make run``: the API's handler processes run these invocations too)."""
    if pool is not None:
        return pool.handler(function["CodeUri"], function["Handler"])
    handler: Callable[[dict[str, Any], Any], Any] = load_handler(
        function["CodeUri"], function["Handler"], base_dir
    )
    return handler


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
        pool: HandlerPool | None = None,
    ) -> None:
        functions = resources_of_type(template, "AWS::Serverless::Function")
        self._dispatcher = functions[DISPATCHER_ID]["Properties"]
        self._worker = functions[WORKER_ID]["Properties"]
        self._base_dir = base_dir
        self._pool = pool
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
        handler = _load(self._pool, self._dispatcher, self._base_dir)
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
        handler = _load(self._pool, self._worker, self._base_dir)
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
        pool: HandlerPool | None = None,
    ) -> None:
        functions = resources_of_type(template, "AWS::Serverless::Function")
        self._function = functions[RECONCILER_ID]["Properties"]
        self._base_dir = base_dir
        self._pool = pool
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
        return _load(self._pool, self._function, self._base_dir)

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

#: Lambda's defaults for a DynamoDB event source the template leaves unset.
DEFAULT_STREAM_BATCH_SIZE = 100
DEFAULT_STREAM_RETRY_ATTEMPTS = 10_000  # Lambda: -1, until the record expires
#: GetRecords' maximum: one read per poll takes what a busy second wrote.
GET_RECORDS_LIMIT = 1000
#: How often the stream's shards are listed again (a new shard is read from its start).
SHARD_REFRESH_SECONDS = 5.0
_GET_RECORDS_TARGET = "DynamoDBStreams_20120810.GetRecords"


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


def _typed_empty_maps(value: Any) -> Any:
    """A wire-JSON attribute with DynamoDB Local's untyped empty maps (``{}``) typed again."""
    if not value:
        return {"M": {}}
    if "M" in value:
        return {"M": {k: _typed_empty_maps(v) for k, v in value["M"].items()}}
    if "L" in value:
        return {"L": [_typed_empty_maps(v) for v in value["L"]]}
    return value


def _whole_seconds(created: Any) -> Any:
    if isinstance(created, datetime):
        return int(created.timestamp())
    if isinstance(created, float):  # DynamoDB Local: 1796555040.000; Lambda: 1796555040
        return int(created)
    return created


def _lambda_record(
    record: Mapping[str, Any], stream_arn: str, images: Mapping[str, Any]
) -> dict[str, Any]:
    change = record["dynamodb"]
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion") or "1.1",
        "eventSource": "aws:dynamodb",
        # DynamoDB Local says "ddblocal"; Lambda gives the table's region.
        "awsRegion": REGION,
        "dynamodb": {
            "ApproximateCreationDateTime": _whole_seconds(
                change.get("ApproximateCreationDateTime")
            ),
            **images,
            "SequenceNumber": change["SequenceNumber"],
            "SizeBytes": change.get("SizeBytes", 0),
            "StreamViewType": change.get("StreamViewType", "NEW_AND_OLD_IMAGES"),
        },
        "eventSourceARN": stream_arn,
    }


def stream_records(records: list[dict[str, Any]], stream_arn: str) -> list[dict[str, Any]]:
    """Lambda's DynamoDB stream records for records returned by botocore's GetRecords."""
    return [
        _lambda_record(
            record,
            stream_arn,
            {
                key: _lambda_image(record["dynamodb"][key])
                for key in ("Keys", "NewImage", "OldImage")
                if key in record["dynamodb"]
            },
        )
        for record in records
    ]


def lambda_stream_records(
    records: list[dict[str, Any]], stream_arn: str, *, untyped_maps: bool = True
) -> list[dict[str, Any]]:
    """Lambda's DynamoDB stream records for GetRecords' wire JSON (:class:`RawGetRecords`).

    The images are Lambda's already; they are walked only when ``untyped_maps`` (the answer had
    a ``{}`` somewhere) to type DynamoDB Local's empty maps.
    """
    shaped: list[dict[str, Any]] = []
    for record in records:
        change = record["dynamodb"]
        images = {key: change[key] for key in ("Keys", "NewImage", "OldImage") if key in change}
        if untyped_maps:
            images = {
                key: {name: _typed_empty_maps(value) for name, value in image.items()}
                for key, image in images.items()
            }
        shaped.append(_lambda_record(record, stream_arn, images))
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


class StreamReadError(RuntimeError):
    """GetRecords answered an error (``code``: its ``__type`` without the namespace)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"GetRecords failed ({status} {code}): {message}")
        self.status = status
        self.code = code


class RawGetRecords:
    """GetRecords as a plain SigV4-signed HTTP POST; the answer's JSON, unparsed by botocore.

    ``credentials`` are botocore's (a session's ``get_credentials()``): DynamoDB Local does not
    check the signature but keeps one database per access key and region, so the request must
    name the same key as the functions' clients. One keep-alive connection, used by one thread.
    """

    def __init__(
        self, endpoint_url: str, region: str, credentials: Any, *, timeout: float = 10.0
    ) -> None:
        from botocore.auth import SigV4Auth  # the stack's dependency already

        parts = urlsplit(endpoint_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._url = f"{parts.scheme}://{parts.netloc}/"
        self._signer = SigV4Auth(credentials, "dynamodb", region)
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def __call__(self, iterator: str, limit: int = GET_RECORDS_LIMIT) -> dict[str, Any]:
        """One GetRecords: ``{"Records": [...wire JSON...], "NextShardIterator": ...}`` plus
        ``"untypedMaps"``: whether the answer had a ``{}`` (see :func:`lambda_stream_records`)."""
        from botocore.awsrequest import AWSRequest

        body = json.dumps({"ShardIterator": iterator, "Limit": limit})
        request = AWSRequest(
            "POST",
            self._url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": _GET_RECORDS_TARGET,
            },
        )
        self._signer.add_auth(request)
        status, text = self._post(body, dict(request.headers.items()))
        answer: dict[str, Any] = json.loads(text) if text else {}
        if status != 200:
            code = str(answer.get("__type", "")).rpartition("#")[2]
            raise StreamReadError(status, code, str(answer.get("message") or answer))
        answer["untypedMaps"] = ":{}" in text
        return answer

    def _post(self, body: str, headers: dict[str, str]) -> tuple[int, str]:
        for attempt in (1, 2):
            connection = self._connection or self._connect()
            try:
                connection.request("POST", "/", body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._connection = None
                if attempt == 2:
                    raise
                continue  # a kept-alive connection the server had closed: once more, afresh
            if response.will_close:
                connection.close()
                self._connection = None
            return response.status, data.decode("utf-8")
        raise AssertionError("unreachable")

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            self._connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout
            )
        else:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout
            )
        return self._connection

    def close(self) -> None:
        """Close the kept-alive connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class DynamoDBStreamReader:
    """Reads a table's stream shard by shard, remembering where each shard was left.

    ``raw`` (a :class:`RawGetRecords`) lets :meth:`read_raw` skip botocore's parsing.
    """

    def __init__(
        self,
        dynamodb: Any,
        streams: Any,
        table_name: str,
        *,
        start_at: str = "LATEST",
        raw: RawGetRecords | None = None,
    ) -> None:
        self._streams = streams
        self.raw = raw
        self.stream_arn = str(
            dynamodb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        )
        self._iterators: dict[str, str | None] = {}
        for shard_id in self._shard_ids():
            self._iterators[shard_id] = self._iterator(shard_id, start_at)
        self._shards_listed = time.monotonic()

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

    def _discover(self, *, always: bool) -> None:
        # A shard that appeared since: read it all. Listed on every botocore read (as before),
        # every few seconds on raw reads, and at once when a shard has closed.
        now = time.monotonic()
        closed = any(iterator is None for iterator in self._iterators.values())
        if not (always or closed or now - self._shards_listed >= SHARD_REFRESH_SECONDS):
            return
        self._shards_listed = now
        for shard_id in self._shard_ids():
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._iterator(shard_id, "TRIM_HORIZON")

    def read(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """New records since the last read, per shard (shard id, botocore's GetRecords records)."""
        self._discover(always=True)
        batches: list[tuple[str, list[dict[str, Any]]]] = []
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue  # closed and read to its end
            answer = self._streams.get_records(ShardIterator=iterator, Limit=100)
            self._iterators[shard_id] = answer.get("NextShardIterator")
            if answer.get("Records"):
                batches.append((shard_id, answer["Records"]))
        return batches

    def read_raw(self, limit: int = GET_RECORDS_LIMIT) -> list[tuple[str, list[dict[str, Any]]]]:
        """New records since the last read, per shard, as Lambda's stream records (``raw``)."""
        if self.raw is None:
            raise RuntimeError("no raw GetRecords: give the reader credentials")
        self._discover(always=False)
        batches: list[tuple[str, list[dict[str, Any]]]] = []
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None:
                continue  # closed and read to its end
            answer = self.raw(iterator, limit)
            self._iterators[shard_id] = answer.get("NextShardIterator")
            if answer.get("Records"):
                records = lambda_stream_records(
                    answer["Records"], self.stream_arn, untyped_maps=answer["untypedMaps"]
                )
                batches.append((shard_id, records))
        return batches

    def rewind(self, shard_id: str, sequence_number: str) -> None:
        """Read `shard_id` again from `sequence_number` (a failed record, as Lambda retries)."""
        self._iterators[shard_id] = self._iterator(
            shard_id, "AT_SEQUENCE_NUMBER", SequenceNumber=sequence_number
        )

    def close(self) -> None:
        """Close the raw reader's connection."""
        if self.raw is not None:
            self.raw.close()


def _stream_event_source(function: Mapping[str, Any]) -> Mapping[str, Any]:
    for event in (function.get("Events") or {}).values():
        if event.get("Type") == "DynamoDB":
            return dict(event.get("Properties") or {})
    return {}


def _positive_int(value: Any, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


class ChargeEventWorker:
    """Feeds the charge events function from the payments table's stream, as Lambda would.

    ``credentials`` (botocore's, for the streams endpoint) turn on :class:`RawGetRecords`;
    without them GetRecords goes through the ``streams`` client.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        base_dir: Path,
        dynamodb: Any,
        streams: Any,
        table_name: str,
        *,
        start_at: str = "LATEST",
        period: float | None = None,
        credentials: Any = None,
        pool: HandlerPool | None = None,
    ) -> None:
        functions = resources_of_type(template, "AWS::Serverless::Function")
        self._function = functions[CHARGE_EVENTS_ID]["Properties"]
        source = _stream_event_source(self._function)
        self._patterns = [
            json.loads(f["Pattern"])
            for f in (source.get("FilterCriteria") or {}).get("Filters", [])
        ]
        self._batch_size = _positive_int(source.get("BatchSize"), DEFAULT_STREAM_BATCH_SIZE)
        retries = source.get("MaximumRetryAttempts")
        self._max_attempts = 1 + (
            DEFAULT_STREAM_RETRY_ATTEMPTS if retries in (None, -1) else max(0, int(retries))
        )
        window = float(source.get("MaximumBatchingWindowInSeconds") or 0)
        self._period = period if period is not None else (window or 1.0)
        self._base_dir = base_dir
        self._pool = pool
        raw = None
        if credentials is not None:
            meta = streams.meta
            raw = RawGetRecords(meta.endpoint_url, meta.region_name, credentials)
        self._reader = DynamoDBStreamReader(
            dynamodb, streams, table_name, start_at=start_at, raw=raw
        )
        self._attempts: dict[tuple[str, str], int] = {}
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

    @property
    def batch_size(self) -> int:
        """The most records one invocation gets (the event source's BatchSize)."""
        return self._batch_size

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
        self._reader.close()

    def _read(self) -> list[tuple[str, list[dict[str, Any]]]]:
        if self._reader.raw is not None:
            return self._reader.read_raw()
        return [
            (shard_id, stream_records(raw, self.stream_arn))
            for shard_id, raw in self._reader.read()
        ]

    def deliver_once(self, handler: Callable[[dict[str, Any], Any], Any] | None = None) -> int:
        """Read new stream records and invoke the function on those the filter passes, in
        batches of at most BatchSize, each shard's in order.

        Returns how many records were delivered. A shard whose batch had failed records (or
        raised) is read again from its first failure on the next call, until the event source's
        MaximumRetryAttempts; then that batch is given up, as Lambda would.
        """
        invoke = handler or _load(self._pool, self._function, self._base_dir)
        delivered = 0
        for shard_id, shaped in self._read():
            records = [r for r in shaped if matches_filters(r, self._patterns)]
            for start in range(0, len(records), self._batch_size):
                batch = records[start : start + self._batch_size]
                delivered += len(batch)
                retry_from = self._invoke(invoke, batch)
                if retry_from is not None and self._retry(shard_id, retry_from):
                    break  # this shard goes on from the failure on the next poll
        return delivered

    def _invoke(self, invoke: Callable[[dict[str, Any], Any], Any], batch: list[Any]) -> str | None:
        """Run one batch; the sequence number to read again from, or None when it succeeded."""
        context = LambdaContext(CHARGE_EVENTS_ID, 256, float(self._function.get("Timeout", 60)))
        try:
            result = call_handler(invoke, {"Records": batch}, context)
        except Exception:  # as Lambda: the whole batch is retried
            logger.exception("charge events batch failed")
            return str(batch[0]["dynamodb"]["SequenceNumber"])
        failed = [f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])]
        return min(failed, key=int) if failed else None

    def _retry(self, shard_id: str, sequence_number: str) -> bool:
        """Rewind to the failure unless its attempts are spent; whether the shard was rewound."""
        key = (shard_id, sequence_number)
        attempts = self._attempts.get(key, 0) + 1
        if attempts >= self._max_attempts:
            self._attempts.pop(key, None)
            logger.error(
                "charge events: records from %s on shard %s failed %d times; given up",
                sequence_number,
                shard_id,
                attempts,
            )
            return False
        self._attempts = {k: v for k, v in self._attempts.items() if k[0] != shard_id}
        self._attempts[key] = attempts
        self._reader.rewind(shard_id, sequence_number)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_once()
            except Exception:  # keep polling; the failed shard is read again
                logger.exception("charge events poll failed")
            self._stop.wait(self._period)
