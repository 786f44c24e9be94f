"""The local stack's view of its bus: every domain event on the console and at /_local/events.

:class:`EventsFeed` subscribes to the bus the way any consumer would, so what it shows is what
really went through EventBridge (moto), not what a publisher meant to send:

* a rule on each of the template's buses matching every domain event (``detail-type`` starting
  with ``charge.``, ``card.`` or ``subscription.``; ``charge.refund.*`` included), targeting an SQS
  queue of its own (moto delivers bus events to SQS targets as the EventBridge event JSON);
* a daemon thread long-polling that queue (1 s), which keeps the last ``capacity`` events
  (default 1,000) in memory and prints each as ONE line through the ``local.events`` logger, e.g.
  ``event charge.succeeded ch_… CAPTURED 1500.00 KZT customer-42``. The line is built from an
  allow-list of fields: card ids are masked (``****0001``), nothing else of a card and no URL
  (a 3-D Secure page URL carries its token) is printed, and odd text is quoted;
* :meth:`EventsFeed.endpoint`, served by the local API Gateway as ``GET /_local/events``
  (``{"data": [{id, type, occurredAt, data}, ...]}``, oldest first, newest last; ``?type=`` keeps
  one type, or a family with a trailing ``*`` such as ``charge.*``; repeat it for several).

Local only: the rule, the queue and the route are not in template.yaml; :meth:`EventsFeed.stop`
ends the thread and removes the rule, its target and the queue.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import parse_qs

from local.apigw.integration import ProxyResponse, missing_token

__all__ = [
    "DEFAULT_CAPACITY",
    "DOMAIN_EVENT_PATTERN",
    "EVENTS_PATH",
    "EventsFeed",
    "summary_line",
]

logger = logging.getLogger("local.events")

#: Where the local API Gateway serves the feed (local only, not a route of template.yaml).
EVENTS_PATH: Final = "/_local/events"
#: How many events the feed keeps (the oldest are dropped first).
DEFAULT_CAPACITY: Final = 1000
#: Every domain event the functions publish (charge.refund.* starts with "charge.").
DOMAIN_EVENT_PATTERN: Final = {
    "detail-type": [{"prefix": "charge."}, {"prefix": "card."}, {"prefix": "subscription."}]
}
_MAX_VALUE = 64  # characters of one value on the console line


class EventsFeed:
    """A rule on the bus(es) into a queue of its own, drained by a thread into a bounded buffer.

    ``events`` and ``sqs`` are boto3 clients for the endpoint the functions publish to;
    ``bus_names`` the buses to watch. ``echo`` receives each console line (default: the
    ``local.events`` logger at INFO).
    """

    def __init__(
        self,
        events: Any,
        sqs: Any,
        bus_names: Sequence[str],
        *,
        capacity: int = DEFAULT_CAPACITY,
        echo: Callable[[str], None] | None = None,
        wait_seconds: int = 1,
    ) -> None:
        self._events = events
        self._sqs = sqs
        self._buses = list(bus_names)
        self._echo = echo or logger.info
        self._wait = wait_seconds
        self._buffer: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        suffix = uuid.uuid4().hex[:8]  # two stacks on one endpoint keep apart
        self.rule_name = f"local-events-feed-{suffix}"
        self.queue_name = f"local-events-feed-{suffix}"
        self.queue_url: str | None = None

    # ------------------------------------------------------------------------- life cycle

    def start(self, *, drain: bool = True) -> EventsFeed:
        """Create the queue, the rule and its target on every bus; start the draining thread
        (``drain=False``: none, call :meth:`drain_once`)."""
        self.queue_url = str(self._sqs.create_queue(QueueName=self.queue_name)["QueueUrl"])
        queue_arn = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        for bus in self._buses:
            self._events.put_rule(
                Name=self.rule_name,
                EventBusName=bus,
                EventPattern=json.dumps(DOMAIN_EVENT_PATTERN),
                State="ENABLED",
                Description="local stack only: every domain event into the local event feed",
            )
            self._events.put_targets(
                Rule=self.rule_name,
                EventBusName=bus,
                Targets=[{"Id": "local-events-feed", "Arn": queue_arn}],
            )
        if drain:
            self._thread = threading.Thread(
                target=self._loop, name="local-events-feed", daemon=True
            )
            self._thread.start()
        logger.info("event feed on %s: every domain event is printed here", ", ".join(self._buses))
        return self

    def stop(self) -> None:
        """Stop draining (within a poll), then remove the rule, its target and the queue."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        for bus in self._buses:
            self._quietly(
                self._events.remove_targets,
                Rule=self.rule_name,
                EventBusName=bus,
                Ids=["local-events-feed"],
            )
            self._quietly(self._events.delete_rule, Name=self.rule_name, EventBusName=bus)
        if self.queue_url is not None:
            self._quietly(self._sqs.delete_queue, QueueUrl=self.queue_url)
            self.queue_url = None

    @staticmethod
    def _quietly(call: Callable[..., Any], **kwargs: Any) -> None:
        try:
            call(**kwargs)
        except Exception as error:  # the endpoint may be gone already; nothing to keep
            logger.debug("event feed clean-up: %s", error)

    def __enter__(self) -> EventsFeed:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- feeding

    def drain_once(self, wait_seconds: int | None = None) -> int:
        """Receive what the bus delivered (waiting up to ``wait_seconds``), keep and print it.

        Returns how many events were taken. Nothing is logged when nothing came.
        """
        if self.queue_url is None:
            raise RuntimeError("the event feed is not started")
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._wait if wait_seconds is None else wait_seconds,
        )
        messages = answer.get("Messages", [])
        for message in messages:
            self.add(_detail_of(message.get("Body", "")))
            self._sqs.delete_message(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        return len(messages)

    def add(self, event: Mapping[str, Any] | None) -> None:
        """Keep one event (``{id, type, occurredAt, data}``) and print its line."""
        if event is None:
            return
        kept = {key: event.get(key) for key in ("id", "type", "occurredAt", "data")}
        with self._lock:
            self._buffer.append(kept)
        self._echo(summary_line(kept))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.drain_once():
                    self._stop.wait(0.05)  # an endpoint that does not long-poll: no busy loop
            except Exception:  # keep draining; SQS keeps what was not deleted
                if self._stop.is_set():
                    return
                logger.exception("event feed: receiving from %s failed", self.queue_name)
                self._stop.wait(1.0)

    # ------------------------------------------------------------------------------ reading

    def events(self, types: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The kept events, oldest first; only those of ``types`` when given (``x.*``: family)."""
        wanted = [t for t in types if t]
        with self._lock:
            kept = list(self._buffer)
        if not wanted:
            return kept
        return [event for event in kept if _type_matches(str(event.get("type")), wanted)]

    def endpoint(self, method: str, query: str) -> ProxyResponse:
        """``GET /_local/events[?type=...]`` for the local API Gateway."""
        if method.upper() not in ("GET", "HEAD"):
            return missing_token()  # what API Gateway answers for a method it does not have
        types = parse_qs(query, keep_blank_values=False).get("type", [])
        body = json.dumps({"data": self.events(types)}, ensure_ascii=False, default=str)
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        return ProxyResponse(200, headers, body.encode("utf-8"))


def _type_matches(kind: str, wanted: Sequence[str]) -> bool:
    return any(
        kind.startswith(pattern[:-1]) if pattern.endswith("*") else kind == pattern
        for pattern in wanted
    )


def _detail_of(body: str) -> dict[str, Any] | None:
    """The domain event (EventBridge ``detail``) of one delivered message, or None."""
    try:
        envelope = json.loads(body)
    except ValueError:
        logger.warning("event feed: a message that is not JSON was dropped")
        return None
    detail = envelope.get("detail") if isinstance(envelope, dict) else None
    if isinstance(detail, str):  # some emulators keep detail as text
        try:
            detail = json.loads(detail)
        except ValueError:
            detail = None
    if not isinstance(detail, dict):
        logger.warning("event feed: a message without an event detail was dropped")
        return None
    if "type" not in detail:
        detail = {**detail, "type": envelope.get("detail-type")}
    return detail


# ------------------------------------------------------------------------------ the line


def summary_line(event: Mapping[str, Any]) -> str:
    """One readable console line for a domain event (allow-listed fields, card ids masked).

    ``event charge.succeeded ch_… CAPTURED 1500.00 KZT customer-42``,
    ``event charge.refund.succeeded rf_… SUCCEEDED 500.00 KZT charge ch_…``,
    ``event card.saved card ****0001 ACTIVE customer-7``,
    ``event subscription.renewed sub_… ACTIVE 4990.00 KZT customer-42 cycle 1``.
    """
    kind = str(event.get("type") or "?")
    raw = event.get("data")
    data: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if kind.startswith("charge.refund."):
        parts = [
            data.get("id"),
            data.get("status"),
            *_money(data),
            *_labelled("charge", data.get("chargeId")),
            *_error(data),
        ]
    elif kind.startswith("charge."):
        parts = [
            data.get("chargeId"),
            data.get("status"),
            *_money(data),
            data.get("accountId"),
            *_error(data),
            *_renewal(data),
        ]
    elif kind.startswith("card."):
        card = data.get("id")
        parts = [
            "card",
            _mask(card) if card is not None else None,
            data.get("status"),
            data.get("accountId"),
        ]
    elif kind.startswith("subscription."):
        parts = [
            data.get("subscriptionId"),
            data.get("status"),
            *_money(data),
            data.get("accountId"),
            *_labelled("cycle", data.get("cycle")),
            *_labelled("reason", data.get("reason")),
        ]
    else:
        parts = [event.get("id")]
    return " ".join(["event", _text(kind), *(_text(p) for p in parts if p not in (None, ""))])


def _money(data: Mapping[str, Any]) -> list[Any]:
    amount = data.get("amount")
    if amount is None or isinstance(amount, bool):
        return []
    try:
        shown = f"{Decimal(str(amount)):.2f}"
    except (InvalidOperation, ValueError):
        shown = str(amount)
    return [shown, data.get("currency")]


def _labelled(label: str, value: Any) -> list[Any]:
    return [] if value in (None, "") else [label, value]


def _error(data: Mapping[str, Any]) -> list[Any]:
    error = data.get("error")
    if isinstance(error, Mapping) and error.get("code") not in (None, ""):
        return [f"error={_text(error['code'])}"]
    return []


def _renewal(data: Mapping[str, Any]) -> list[Any]:
    renewal = data.get("subscription")
    if not isinstance(renewal, Mapping) or not renewal.get("id"):
        return []
    return ["renewal", f"{_text(renewal['id'])}#{_text(renewal.get('cycle'))}"]


def _mask(card_id: Any) -> str:
    text = str(card_id)
    return "****" + text[-4:] if len(text) > 4 else "****"


def _text(value: Any) -> str:
    """A value as one token: as is when plain, else quoted with its control characters escaped
    (a merchant's account id cannot break the line or forge another); long ones are cut."""
    text = str(value)
    if len(text) > _MAX_VALUE:
        text = text[: _MAX_VALUE - 1] + "…"
    if text and all(ch.isprintable() and not ch.isspace() for ch in text):
        return text
    return json.dumps(text, ensure_ascii=True)
