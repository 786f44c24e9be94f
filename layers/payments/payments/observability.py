"""Logger and metrics shared by every function (Powertools), named explicitly so nothing reads
the environment at import time.

Nothing logs request bodies, tokens, secret_hash, PaReq/PaRes or unmasked card ids.

An invocation that counted nothing publishes nothing and says nothing: Powertools' EMF provider
warns "No application metrics to publish" from `flush_metrics` whenever its set is empty (even
with `raise_on_empty_metrics=False`), so a GET, an empty dispatcher tick or a quiet reconciler
run would each leave a warning in the logs. `metrics` flushes only what was added instead.

Logs are paid by the byte (CloudWatch Logs ingestion; EMF metrics are log lines too), so
(docs/decisions.md, 2026-12-06, "log bytes per charge"):

- every line leaves out `function_arn` (the account and region; the log group already names the
  function) and `function_memory_size` (a deployment fact, in template.yaml), which Powertools'
  `inject_lambda_context` adds to every line, and `service` (always "payments": one service per
  stack; EMF documents keep it, it is their metrics' dimension). `cold_start` is on a cold
  start's lines only (absent means false). INFO and DEBUG lines leave out `location` (their
  message names the place) and `timestamp` (CloudWatch Logs stamps every event: Logs Insights'
  @timestamp); warnings and errors keep both;
- metrics with their own dimensions (EpayLatency by Operation, InvoiceSpaceUsedPercent by
  Terminal, ...) are not printed one EMF document each (Powertools' `single_metric`): they are
  kept until the invocation's flush, several values of one metric as one value array, and put
  in the invocation's document as further metric directives where their root keys do not clash
  (one Operation value per document: EMF takes a dimension's value from the root);
- `at_invocation_end` hooks run at that flush, before the metrics are printed: every function's
  handler has `@metrics.log_metrics`, which flushes at the end of every invocation, errors
  included.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

# Keys Powertools' inject_lambda_context adds to every line that no reader needs per line.
DROPPED_KEYS = ("function_arn", "function_memory_size", "service")
# Warnings and errors, where an engineer starts, keep `location` (function:line) and their own
# `timestamp`; the rest leave them out (a message names its place; CloudWatch Logs stamps every
# event, Logs Insights' @timestamp).
_KEPT_WHOLE_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
_DROPPED_BELOW_WARNING = ("location", "timestamp")
# EMF: at most 100 values per metric and 100 metric definitions in one document.
MAX_VALUES = 100
MAX_METRICS = 100


class CompactFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter without the keys every line repeated for nobody."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        """Powertools' serialization, less DROPPED_KEYS (and `location` below WARNING)."""
        for key in DROPPED_KEYS:
            log.pop(key, None)
        if log.get("level") not in _KEPT_WHOLE_LEVELS:
            for key in _DROPPED_BELOW_WARNING:
                log.pop(key, None)
        if log.get("cold_start") is False:  # said on the lines of a cold start only
            del log["cold_start"]
        return super().serialize(log)


_hooks: list[Callable[[], None]] = []


def at_invocation_end(hook: Callable[[], None]) -> None:
    """Run `hook` at every metrics flush (the end of every invocation), once however often it
    is registered. A hook logs what it kept for the invocation (telemetry's charge trails)."""
    if hook not in _hooks:
        _hooks.append(hook)


@dataclass
class _Group:
    """The values of metrics that share one set of extra dimensions, kept until the flush."""

    dimensions: dict[str, str]
    units: dict[str, str] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    metadata: dict[str, list[Any]] = field(default_factory=dict)
    usual: dict[str, Any] = field(default_factory=dict)

    def members(self) -> dict[str, Any]:
        """The root members: dimensions, metadata (but a key whose every value is its usual
        one), values."""
        metadata = {
            key: values
            for key, values in self.metadata.items()
            if key not in self.usual or any(v != self.usual[key] for v in values)
        }
        return {**self.dimensions, **metadata, **self.values}

    def full(self) -> bool:
        return any(len(v) >= MAX_VALUES for v in self.values.values())


class QuietEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' CloudWatch EMF provider that flushes only when a metric was added, safe to
    add to from several threads (the reconciler checks charges in a pool), and that prints the
    invocation's metrics of other dimension sets in as few EMF documents as EMF allows."""

    _lock = threading.RLock()  # RLock: add_metric flushes by itself at 100 metrics

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._groups: dict[tuple[tuple[str, str], ...], _Group] = {}

    def add_metric(
        self,
        name: str,
        unit: MetricUnit | str,
        value: float,
        resolution: MetricResolution | int = 60,
    ) -> None:
        """Powertools' add_metric, one thread at a time (it is a read-modify-write of a dict)."""
        with self._lock:
            super().add_metric(name, unit, value, resolution)

    def add_dimensioned_metric(
        self,
        name: str,
        unit: MetricUnit,
        value: float,
        dimensions: Mapping[str, str],
        metadata: Mapping[str, Any] | None = None,
        usual: Mapping[str, Any] | None = None,
    ) -> None:
        """One value of `name` with `dimensions` besides `service` (what `single_metric` would
        print at once), kept until the flush. Values of one name and dimensions become one
        value array; `metadata` values become arrays in the same order, left out when every
        value of a key is its `usual` one. Give one metric name per set of dimensions."""
        key = tuple(sorted(dimensions.items()))
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(dict(dimensions))
            group.usual.update(usual or {})
            group.units[name] = unit.value
            group.values.setdefault(name, []).append(float(value))
            for meta_key, meta_value in (metadata or {}).items():
                group.metadata.setdefault(meta_key, []).append(meta_value)
            if group.full():  # EMF's limit of values per metric: print this group now
                del self._groups[key]
                self._print([self._document(group)])

    def clear_metrics(self) -> None:
        """Powertools' clear_metrics, and the kept dimensioned metrics too."""
        with self._lock:
            super().clear_metrics()
            self._groups.clear()

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        """Run the `at_invocation_end` hooks, then print the metrics added (and clear them) in
        as few EMF documents as their dimensions allow; nothing when none were. A timestamp set
        for this flush (`set_timestamp`) does not outlive it.

        `raise_on_empty_metrics=True` keeps Powertools' behaviour (it raises on an empty set).
        """
        for hook in list(_hooks):
            hook()
        with self._lock:
            if not self.metric_set and not self._groups:
                if raise_on_empty_metrics:
                    super().flush_metrics(raise_on_empty_metrics=True)
                self.timestamp = None
                return
            documents: list[dict[str, Any]] = []
            if self.metric_set:
                documents.append(dict(self.serialize_metric_set()))
            groups = list(self._groups.values())
            self._groups.clear()
            for group in groups:
                if not any(self._merge(document, group) for document in documents):
                    documents.append(self._document(group))
            super().clear_metrics()
            self._print(documents)
            self.timestamp = None

    # ------------------------------------------------------------------ EMF documents

    def _directive(self, group: _Group) -> dict[str, Any]:
        return {
            "Namespace": self.namespace,
            "Dimensions": [["service", *group.dimensions]],
            "Metrics": [{"Name": name, "Unit": unit} for name, unit in group.units.items()],
        }

    def _members(self, group: _Group) -> dict[str, Any]:
        return {"service": self.service, **group.members()}

    def _document(self, group: _Group) -> dict[str, Any]:
        """A document of this group alone."""
        return {
            "_aws": {
                "Timestamp": self.timestamp or _now_ms(),
                "CloudWatchMetrics": [self._directive(group)],
            },
            **self._members(group),
        }

    def _merge(self, document: dict[str, Any], group: _Group) -> bool:
        """Add the group to the document as one more metric directive, unless a root key of it
        (a dimension, a metadata key, a metric name) is already there with another meaning."""
        members = self._members(group)
        clash = any(
            k in document and (k != "service" or document[k] != v) for k, v in members.items()
        )
        directives: list[dict[str, Any]] = document["_aws"]["CloudWatchMetrics"]
        defined = sum(len(d["Metrics"]) for d in directives)
        if clash or defined + len(group.units) > MAX_METRICS:
            return False
        directives.append(self._directive(group))
        document.update(members)
        return True

    @staticmethod
    def _print(documents: list[dict[str, Any]]) -> None:
        if is_metrics_disabled():
            return
        for document in documents:
            print(json.dumps(document, separators=(",", ":")))


def _now_ms() -> int:
    return int(time.time() * 1000)


class QuietMetrics(Metrics):
    """Powertools Metrics over `QuietEMFProvider`, sharing Metrics' class-level metric set (so
    `@metrics.log_metrics` and `metrics.add_metric` work exactly as documented)."""

    def __init__(self, *, namespace: str, service: str) -> None:
        super().__init__(namespace=namespace, service=service)
        self.quiet = QuietEMFProvider(
            namespace=namespace,
            service=service,
            metric_set=self.metric_set,
            dimension_set=self.dimension_set,
            metadata_set=self.metadata_set,
            default_dimensions=self.default_dimensions,
        )
        self.provider = self.quiet

    def add_dimensioned_metric(
        self,
        name: str,
        unit: MetricUnit,
        value: float,
        dimensions: Mapping[str, str],
        metadata: Mapping[str, Any] | None = None,
        usual: Mapping[str, Any] | None = None,
    ) -> None:
        """A metric with its own dimensions (besides `service`), published with the
        invocation's other metrics at the flush (see `QuietEMFProvider.add_dimensioned_metric`)."""
        self.quiet.add_dimensioned_metric(name, unit, value, dimensions, metadata, usual)


logger = Logger(service="payments", logger_formatter=CompactFormatter())
metrics = QuietMetrics(namespace="Payments", service="payments")
