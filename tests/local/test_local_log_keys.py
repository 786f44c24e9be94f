"""Every log line carries its own function's name, though all functions share one process.

Powertools keeps a Logger's keys (function_name, function_request_id, correlation_id, appended
keys) once per process; the local runtime (local.apigw.runtime.call_handler) gives each local
invocation its own copy, so concurrent invocations of different functions cannot overwrite each
other's keys.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local.apigw import LambdaContext, call_handler
from local.apigw.server import LocalApiGateway
from local.run import APPROVED_TEST_CARD_ID, start_stack

LOGNAMES = Path(__file__).resolve().parent / "fixtures" / "lognames"


class _Lines(logging.Handler):
    """Formats every record with the Logger's own (Powertools) formatter, in the emitting
    thread, as the function's stdout handler does; keeps the JSON lines."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[dict[str, Any]] = []
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self.format(record))
        with self._lock_lines:
            self.lines.append(line)


def _capture(powertools_logger: Any) -> _Lines:
    lines = _Lines(powertools_logger.registered_formatter)
    logging.getLogger(powertools_logger.name).addHandler(lines)
    return lines


@pytest.fixture(scope="module")
def lognames_api() -> Iterator[LocalApiGateway]:
    api = LocalApiGateway(LOGNAMES / "template.yaml", {}, port=0, integration_timeout=10)
    api.start()
    try:
        yield api
    finally:
        api.stop()


def _shared() -> Any:
    return sys.modules["lognames_shared"]  # the fixture's layer, loaded with the handlers


def test_concurrent_invocations_of_two_functions_keep_their_own_function_name(
    lognames_api: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given two functions sharing one Powertools Logger, the first logging before and after the
    # second's whole invocation (which appends keys of its own) - as a postLink that runs while
    # a charge is being made
    shared = _shared()
    shared.reset()
    lines = _capture(shared.logger)
    answers: dict[str, int] = {}

    def call(path: str) -> None:
        answers[path] = http.request("GET", f"{lognames_api.url}{path}").status

    try:
        # When both are invoked concurrently through the local API
        threads = [threading.Thread(target=call, args=(p,)) for p in ("/first", "/second")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    finally:
        logging.getLogger(shared.logger.name).removeHandler(lines)
    assert answers == {"/first": 200, "/second": 200}
    assert shared.second_done.is_set()  # they really overlapped

    # Then every line names the function that logged it, with that invocation's request id
    by_message = {line["message"]: line for line in lines.lines}
    assert set(by_message) == {"first: before", "first: after", "second"}
    first_before, first_after = by_message["first: before"], by_message["first: after"]
    second = by_message["second"]
    assert first_before["function_name"] == first_after["function_name"] == "FirstFunction"
    assert first_before["function_request_id"] == first_after["function_request_id"]
    assert second["function_name"] == "SecondFunction"
    assert second["function_request_id"] != first_after["function_request_id"]
    # And what the second function appended stayed its own
    assert second["order_id"] == "second-only"
    assert second["correlation_id"] == "corr-second"
    assert "order_id" not in first_after
    assert "correlation_id" not in first_after


def test_an_invocations_keys_do_not_outlive_it(lognames_api: LocalApiGateway) -> None:
    # Given the second fixture function run by a worker thread (as local.workers does), with
    # nothing to wait for
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    shared = _shared()
    shared.reset()
    shared.first_started.set()
    from local.apigw.runtime import load_handler

    handler = load_handler("functions/second/", "app.lambda_handler", LOGNAMES)
    formatter = shared.logger.registered_formatter
    assert isinstance(formatter, LambdaPowertoolsFormatter)
    before = dict(formatter.get_current_keys())

    # When it is invoked in this thread through the local runtime
    result = call_handler(handler, {}, LambdaContext("SecondFunction", 256, 10.0))

    # Then its keys went with it: the process-wide keys are as they were
    assert result["statusCode"] == 200
    after = formatter.get_current_keys()
    assert after == before
    assert "function_name" not in after
    assert "order_id" not in after


def test_outside_a_local_invocation_the_keys_stay_process_wide(
    lognames_api: LocalApiGateway,
) -> None:
    # Given the shared Logger used outside any local invocation (as in Lambda: one invocation
    # per process, and threads of its own see its keys)
    shared = _shared()
    logger = shared.logger
    logger.append_keys(process_wide="yes")
    seen: list[Any] = []
    try:
        # When another plain thread reads the keys
        thread = threading.Thread(target=lambda: seen.append(dict(logger.get_current_keys())))
        thread.start()
        thread.join()
    finally:
        logger.remove_keys(["process_wide"])
    # Then it sees them, as Powertools documents
    assert seen[0].get("process_wide") == "yes"


def test_the_stack_names_the_charge_events_function_while_the_api_runs_others() -> None:
    # Given the whole local stack (its charge events worker polls the stream in its own thread)
    http = urllib3.PoolManager(maxsize=16, timeout=urllib3.Timeout(connect=2, read=20))
    with start_stack(0, environ={}, dynamodb="auto") as stack:
        from payments.observability import logger

        lines = _capture(logger)
        try:
            # When charges, malformed postLinks and the worker's invocations overlap
            def charge() -> None:
                http.request(
                    "POST",
                    f"{stack.url}/charges",
                    body=json.dumps(
                        {
                            "amount": 1500.00,
                            "currency": "KZT",
                            "cardId": APPROVED_TEST_CARD_ID,
                            "accountId": "customer-42",
                            "description": "Order 42",
                        }
                    ),
                    headers={
                        "Content-Type": "application/json",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                )

            def postlink() -> None:
                http.request("POST", f"{stack.url}/epay/postlink", body=b"not json")

            threads = [threading.Thread(target=f) for _ in range(4) for f in (charge, postlink)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            for _ in range(40):  # the worker publishes each charge.succeeded
                published = [
                    event_id
                    for x in lines.lines
                    if x["message"] == "events published"
                    for event_id in x["event_ids"]
                    if event_id.startswith("charge.succeeded:")
                ]
                if len(published) >= 4:
                    break
                threading.Event().wait(0.25)
        finally:
            logging.getLogger(logger.name).removeHandler(lines)

    # Then each function's lines carry its own name
    def names(message: str) -> set[str]:
        return {x.get("function_name", "") for x in lines.lines if x["message"] == message}

    assert names("events published") == {"ChargeEventsFunction"}
    assert names("postLink notification not settled") == {"PostLinkFunction"}
    assert names("charge transitioned") == {"ChargesFunction"}
