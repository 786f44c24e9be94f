"""An idle `make run` is quiet: with nothing happening, the stack's periodic work (the renewal
dispatcher tick, the renewal queue poll, the stream poll, the event feed's drain) prints nothing:
no log line at INFO or above, no metrics blob, no Powertools warning."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from local.run import NOISY_LOGGERS, start_stack
from local.workers import RenewalWorkers


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # What `make run` shows: INFO and up, but the libraries it turns down only from WARNING
        if record.name.split(".")[0] in NOISY_LOGGERS and record.levelno < logging.WARNING:
            return
        self.records.append(record)


@contextmanager
def _everything_printed(*logger_names: str) -> Iterator[_Records]:
    """Every log record at INFO and up (root, and the given non-propagating loggers)."""
    records = _Records()
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in logger_names)]
    root_level = logging.getLogger().level
    for logger in loggers:
        logger.addHandler(records)
    logging.getLogger().setLevel(logging.INFO)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(records)
        logging.getLogger().setLevel(root_level)


def test_an_idle_stack_prints_nothing(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # Given the dispatcher's ticks counted
    ticks: list[Any] = []
    dispatch_once = RenewalWorkers.dispatch_once

    def counted(self: RenewalWorkers) -> Any:
        ticks.append(time.monotonic())
        return dispatch_once(self)

    monkeypatch.setattr(RenewalWorkers, "dispatch_once", counted)
    # And the whole stack, the renewal dispatcher every 0.2 s (make run: every 10 s)
    with start_stack(0, environ={}, dynamodb="auto", renewal_period=0.2) as stack:
        assert stack.events is not None  # the event feed drains too
        from payments.observability import logger as payments_logger

        time.sleep(0.5)  # let start-up lines and the first (cold) ticks pass
        capfd.readouterr()
        started = len(ticks)
        # When nothing happens for a while
        with (
            _everything_printed(payments_logger.name) as records,
            warnings.catch_warnings(record=True) as warned,
        ):
            warnings.simplefilter("always")
            deadline = time.monotonic() + 15
            while len(ticks) - started < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.2)  # the stream poller and the feed poll a few more times
        out, err = capfd.readouterr()

    # Then the dispatcher ran many empty ticks (and the pollers polled)
    assert len(ticks) - started >= 4
    # And nothing was logged, printed or warned
    assert [f"{r.name}: {r.getMessage()}" for r in records.records] == []
    assert out == ""
    assert err == ""
    assert [str(w.message) for w in warned] == []
