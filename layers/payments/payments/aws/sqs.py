"""The renewal queue on SQS (boto3 client injected)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from payments.errors import QueueUnavailableError
from payments.subscriptions.model import RenewalMessage

MAX_BATCH = 10  # SendMessageBatch's limit


class SqsRenewalQueue:
    """SendMessageBatch in batches of ten; entries SQS refuses are sent once more, then raised."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, messages: list[RenewalMessage]) -> None:
        """Enqueue every message or raise QueueUnavailableError."""
        for start in range(0, len(messages), MAX_BATCH):
            pending = {str(i): m for i, m in enumerate(messages[start : start + MAX_BATCH])}
            for _round in range(2):
                pending = self._send(pending)
                if not pending:
                    break
            if pending:
                raise QueueUnavailableError(f"SQS refused {len(pending)} renewal messages")

    def _send(self, pending: dict[str, RenewalMessage]) -> dict[str, RenewalMessage]:
        entries = [
            {
                "Id": entry_id,
                "MessageBody": message.body(),
                "MessageAttributes": {
                    "key": {"DataType": "String", "StringValue": message.key},
                },
            }
            for entry_id, message in pending.items()
        ]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailableError(f"SQS unavailable ({type(exc).__name__})") from exc
        return {f["Id"]: pending[f["Id"]] for f in answer.get("Failed", [])}
