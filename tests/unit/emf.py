"""Reading the CloudWatch embedded metric format (EMF) documents Powertools prints."""

from __future__ import annotations

import json
from typing import Any


def emf_blobs(out: str) -> list[dict[str, Any]]:
    """The EMF documents printed on stdout (one JSON object a line)."""
    blobs = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


def metric_names(blob: dict[str, Any]) -> set[str]:
    """The metric names one EMF document carries."""
    return {m["Name"] for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
