"""The reconcile queue on SQS FIFO: one message per due shard (boto3 client injected)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payments.charges.reconcile_fanout import ReconcileUnit
from payments.errors import QueueUnavailableError

MAX_BATCH = 10  # SendMessageBatch's limit


class SqsReconcileQueue:
    """SendMessageBatch in batches of ten, each unit in its shard's message group with the
    tick's deduplication id; entries SQS refuses are sent once more, then raised."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, units: Sequence[ReconcileUnit]) -> None:
        """Enqueue every unit or raise QueueUnavailableError."""
        for start in range(0, len(units), MAX_BATCH):
            pending = {str(i): u for i, u in enumerate(units[start : start + MAX_BATCH])}
            for _round in range(2):
                pending = self._send(pending)
                if not pending:
                    break
            if pending:
                raise QueueUnavailableError(f"SQS refused {len(pending)} reconcile units")

    def _send(self, pending: dict[str, ReconcileUnit]) -> dict[str, ReconcileUnit]:
        entries = [
            {
                "Id": entry_id,
                "MessageBody": unit.body(),
                "MessageGroupId": unit.group,
                "MessageDeduplicationId": unit.dedup_id,
            }
            for entry_id, unit in pending.items()
        ]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(f"SQS unavailable ({type(exc).__name__})") from exc
        return {f["Id"]: pending[f["Id"]] for f in answer.get("Failed", [])}
