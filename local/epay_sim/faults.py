"""Injected faults: which are armed, and how one changes the answer to a request."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from .models import DEFAULT_FAULT_DELAY, FAULTS, OPS, Fault, JournalEntry
from .wire import Response, error, internal_error, json_response


class FaultBook:
    """Faults armed for the next requests of an op, consumed one request at a time."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._armed: list[Fault] = []

    def arm(self, op: str, fault: str, count: int = 1, delay: float | None = None) -> None:
        """Arm ``fault`` for the next ``count`` requests of ``op`` (``EpaySimulator.inject``)."""
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        if count < 1:
            raise ValueError("count must be at least 1")
        wait = DEFAULT_FAULT_DELAY.get(fault, 0.0) if delay is None else float(delay)
        with self._lock:
            self._armed.append(Fault(op, fault, count, wait))

    def take(self, op: str) -> Fault | None:
        """The first fault armed for ``op``, counting this request against it."""
        with self._lock:
            for armed in self._armed:
                if armed.op == op:
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._armed.remove(armed)
                    return armed
        return None

    def armed(self) -> list[Fault]:
        """Copies of the faults still armed."""
        with self._lock:
            return [Fault(f.op, f.fault, f.remaining, f.delay) for f in self._armed]

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._armed.clear()


def answer_through(
    fault: Fault | None,
    entry: JournalEntry,
    answer: Callable[[], Response],
    wait: Callable[[float], object],
    nonfinal: tuple[int, str] = (454, ""),
) -> Response | None:
    """Answer one journaled request through ``fault``; None means: close, do not answer.

    ``answer`` commits and returns the normal answer; ``wait`` sleeps (interrupted on stop).
    ``entry.status`` becomes 0 as soon as it is known that no answer will be sent. ``nonfinal``
    is the (code, message) the ``nonfinal_*`` faults answer with HTTP 400.
    """
    kind = fault.fault if fault else None
    entry.fault = kind
    if kind == "down":
        entry.status = 0
        return None
    if kind == "500_before_commit":
        return internal_error()
    if kind == "in_progress":  # the status API's "ask later" (resultCode 107)
        return json_response(200, {"resultCode": "107", "resultMessage": "In progress"})
    if kind == "nonfinal_before_commit":  # refused with a non-final code, nothing happened
        return error(*nonfinal)
    delay = fault.delay if fault else 0.0
    if kind == "slow":
        wait(delay)
    response = answer()
    if kind == "timeout_after_commit":
        entry.status = 0
        wait(delay)
        return None
    if kind == "500_after_commit":
        return internal_error()
    if kind == "broken_body":
        cut = response.body[: len(response.body) // 2] if len(response.body) > 2 else b""
        return Response(200, cut or b'{"status": "', "application/json; charset=utf-8")
    if kind == "nonfinal_after_commit":  # it went through (or not), yet a non-final code comes
        return error(*nonfinal)
    if kind == "error_as_200":
        return _error_as_200(response)
    return response


def _error_as_200(response: Response) -> Response:
    """A 4xx ``{code, message}`` answered with HTTP 200 instead (as some ePay answers come)."""
    if not 400 <= response.status < 500:
        return response
    try:
        body = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return response
    if not isinstance(body, dict) or "code" not in body:
        return response
    return Response(200, response.body, response.content_type, dict(response.headers))
