"""Logger and metrics shared by every function (Powertools), named explicitly so nothing reads
the environment at import time.

Nothing logs request bodies, tokens, secret_hash, PaReq/PaRes or unmasked card ids.

An invocation that counted nothing publishes nothing and says nothing: Powertools' EMF provider
warns "No application metrics to publish" from `flush_metrics` whenever its set is empty (even
with `raise_on_empty_metrics=False`), so a GET, an empty dispatcher tick or a quiet reconciler
run would each leave a warning in the logs. `metrics` flushes only what was added instead.
"""

from __future__ import annotations

import threading

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)


class QuietEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' CloudWatch EMF provider that flushes only when a metric was added, safe to
    add to from several threads (the reconciler checks charges in a pool)."""

    _lock = threading.RLock()  # RLock: add_metric flushes by itself at 100 metrics

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

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        """Print the EMF blob of the metrics added (and clear them); nothing when none were.
        A timestamp set for this blob (`set_timestamp`) does not outlive it.

        `raise_on_empty_metrics=True` keeps Powertools' behaviour (it raises on an empty set).
        """
        with self._lock:
            if self.metric_set or raise_on_empty_metrics:
                super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
            self.timestamp = None


class QuietMetrics(Metrics):
    """Powertools Metrics over `QuietEMFProvider`, sharing Metrics' class-level metric set (so
    `@metrics.log_metrics` and `metrics.add_metric` work exactly as documented)."""

    def __init__(self, *, namespace: str, service: str) -> None:
        super().__init__(namespace=namespace, service=service)
        self.provider = QuietEMFProvider(
            namespace=namespace,
            service=service,
            metric_set=self.metric_set,
            dimension_set=self.dimension_set,
            metadata_set=self.metadata_set,
            default_dimensions=self.default_dimensions,
        )


logger = Logger(service="payments")
metrics = QuietMetrics(namespace="Payments", service="payments")
