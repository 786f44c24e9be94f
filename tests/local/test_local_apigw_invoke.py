"""The local Lambda runtime runs invocations on reused threads (no thread start per request)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from local.apigw import LambdaContext, runtime
from local.apigw.runtime import _Workers, invoke


def _context() -> LambdaContext:
    return LambdaContext(function_name="EchoFunction", memory_limit_in_mb=128, timeout_seconds=3)


def test_invocations_one_after_another_reuse_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given this process's invocation threads, none left idle by earlier tests (any idle one
    # may take a job), and a handler that notes the thread it runs on
    monkeypatch.setattr(runtime, "_workers", _Workers())
    threads: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        threads.append(threading.get_ident())
        return threading.current_thread().name

    # When it is invoked five times, one after the other
    outcomes = [invoke(handler, {}, _context(), wait=1) for _ in range(5)]

    # Then all ran on the same thread, named after the function
    assert all(outcome.finished for outcome in outcomes)
    assert {outcome.result for outcome in outcomes} == {"lambda-EchoFunction"}
    assert len(set(threads)) == 1


def test_a_caller_answered_at_once_finds_the_thread_idle() -> None:
    # Given invocation threads, and a first invocation whose caller starts the next one the
    # moment it is handed the answer (no pause for the thread to get back to waiting)
    workers = _Workers()
    threads: list[int] = []
    second_done = threading.Event()

    def second() -> Any:
        threads.append(threading.get_ident())
        return second_done.set

    def first() -> Any:
        threads.append(threading.get_ident())
        return lambda: workers.run(second, "lambda-EchoFunction")

    # When the first runs
    workers.run(first, "lambda-EchoFunction")

    # Then the second ran on the same thread: one thread was ever started
    assert second_done.wait(2)
    assert threads[0] == threads[1]
    assert workers.started == 1


def test_an_abandoned_invocation_does_not_hold_up_the_next() -> None:
    # Given an invocation abandoned while its handler still runs
    release = threading.Event()

    def slow(event: dict[str, Any], context: Any) -> Any:
        release.wait(5)
        return "late"

    abandoned = invoke(slow, {}, _context(), wait=0.05)

    def quick(event: dict[str, Any], context: Any) -> Any:
        return threading.get_ident()

    # When another invocation follows
    started = time.monotonic()
    outcome = invoke(quick, {}, _context(), wait=1)
    release.set()

    # Then it finishes at once, on another thread than the one still busy
    assert not abandoned.finished
    assert outcome.finished
    assert time.monotonic() - started < 0.5


def test_concurrent_invocations_each_get_a_thread() -> None:
    # Given a handler that waits until four invocations run at the same time
    barrier = threading.Barrier(4, timeout=2)

    def handler(event: dict[str, Any], context: Any) -> Any:
        barrier.wait()
        return threading.get_ident()

    # When four callers invoke it at once
    results: list[Any] = []

    def call() -> None:
        results.append(invoke(handler, {}, _context(), wait=3))

    callers = [threading.Thread(target=call) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()

    # Then none waited for another: four threads ran them
    assert all(outcome.finished and outcome.error is None for outcome in results)
    assert len({outcome.result for outcome in results}) == 4
