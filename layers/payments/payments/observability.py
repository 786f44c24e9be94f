"""Logger and metrics shared by every function (Powertools), named explicitly so nothing reads
the environment at import time.

Nothing logs request bodies, tokens, secret_hash, PaReq/PaRes or unmasked card ids.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="payments")
metrics = Metrics(namespace="Payments", service="payments")
