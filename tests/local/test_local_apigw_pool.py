"""local.apigw.pool: the local API's handlers in worker processes (`make run`'s mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import urllib3
from conftest import FIXTURE_ENV, FIXTURE_TEMPLATE

from local.apigw.pool import HandlerPool, HandlerPoolError
from local.apigw.server import LocalApiGateway


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait would remove it.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:  # ended meanwhile
        return False


def _gone(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def pooled() -> Iterator[LocalApiGateway]:
    """The fixture template with its handlers in two worker processes."""
    api = LocalApiGateway(
        FIXTURE_TEMPLATE, FIXTURE_ENV, port=0, integration_timeout=1.5, processes=2
    )
    api.start()
    try:
        yield api
    finally:
        api.stop()


def test_a_pooled_handler_gets_the_same_event_context_and_environment(
    pooled: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # When a route is called on a gateway whose handlers run in worker processes
    response = http.request("POST", f"{pooled.url}/echo/hi?x=1", body=b"{}")

    # Then the handler saw the proxy event, its context and the functions' environment
    assert response.status == 200, response.data
    payload = json.loads(response.data)
    assert payload["event"]["pathParameters"] == {"thing": "hi"}
    assert payload["event"]["requestContext"]["requestId"] == response.headers["x-amzn-RequestId"]
    assert payload["context"]["function_name"] == "EchoFunction"
    assert 0 < payload["context"]["remaining_ms"] <= 2000
    assert payload["env"] == FIXTURE_ENV
    assert payload["layer"] == "from-the-layer"
    # And not in this process: the pool's workers are other processes
    assert pooled.pool is not None
    assert len(pooled.pool.pids) == 2
    assert os.getpid() not in pooled.pool.pids


def test_pooled_errors_and_timeouts_answer_like_api_gateway(
    pooled: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # A handler that raises (in its worker) is a 502
    response = http.request("GET", f"{pooled.url}/behave/boom")
    assert response.status == 502
    assert json.loads(response.data) == {"message": "Internal server error"}
    # A malformed proxy answer too
    assert http.request("GET", f"{pooled.url}/behave/malformed").status == 502
    # A handler past the integration timeout is a 504 at the timeout, not when it ends
    started = time.monotonic()
    response = http.request("GET", f"{pooled.url}/behave/sleep?seconds=1.8")
    assert response.status == 504
    assert time.monotonic() - started < 1.8
    # And the workers keep serving afterwards
    assert http.request("GET", f"{pooled.url}/behave/status?code=409").status == 409


def test_pooled_invocations_run_side_by_side(
    pooled: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # When eight handlers that sleep 0.5 s are called at once
    started = time.monotonic()
    with ThreadPoolExecutor(8) as executor:
        statuses = list(
            executor.map(
                lambda _: http.request("GET", f"{pooled.url}/behave/sleep?seconds=0.5").status,
                range(8),
            )
        )
    # Then they overlap (each worker runs several invocations on threads)
    assert statuses == [200] * 8
    assert time.monotonic() - started < 1.4


def test_stop_ends_every_worker_process(http: urllib3.PoolManager) -> None:
    # Given a gateway with worker processes that served a request
    api = LocalApiGateway(FIXTURE_TEMPLATE, FIXTURE_ENV, port=0, processes=2).start()
    assert api.pool is not None
    pids = api.pool.pids
    assert http.request("GET", f"{api.url}/behave/empty").status == 204
    # When it stops (an invocation still running in a worker)
    http.request("GET", f"{api.url}/behave/sleep?seconds=0.1")
    api.stop()
    # Then no worker process is left
    assert _gone(pids, within=1.0)


_ORPHANING_PARENT = """
import sys, time
from local.apigw.pool import HandlerPool
pool = HandlerPool(
    2, env={}, layers=[sys.argv[1]], handlers=[("functions/echo/", "app.lambda_handler")],
    base_dir=sys.argv[2],
).start()
print(" ".join(map(str, pool.pids)), flush=True)
time.sleep(60)
"""


def test_workers_exit_when_their_parent_is_killed() -> None:
    # Given a process whose pool has two worker processes
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _ORPHANING_PARENT,
            str(FIXTURE_TEMPLATE.parent / "layers" / "echo"),
            str(FIXTURE_TEMPLATE.parent),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2
        # When the parent is killed (no chance to stop them)
        parent.kill()
        parent.wait(timeout=10)
        # Then the workers notice (their pipe closed) and exit by themselves
        assert _gone(pids)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


def test_a_worker_that_cannot_load_a_handler_fails_the_start_and_leaves_nothing() -> None:
    pool = HandlerPool(
        2,
        env={},
        layers=[],
        handlers=[("functions/nowhere/", "app.lambda_handler")],
        base_dir=FIXTURE_TEMPLATE.parent,
        start_timeout=30,
    )
    with pytest.raises(HandlerPoolError, match="does not exist"):
        pool.start()
    assert pool.pids == []


def test_invocations_in_flight_on_a_dying_worker_fail_fast() -> None:
    pool = HandlerPool(
        1,
        env=FIXTURE_ENV,
        layers=[str(FIXTURE_TEMPLATE.parent / "layers" / "echo")],
        handlers=[("functions/echo/", "app.lambda_handler")],
        base_dir=FIXTURE_TEMPLATE.parent,
    ).start()
    try:
        from local.apigw.runtime import LambdaContext

        context = LambdaContext(
            function_name="EchoFunction", memory_limit_in_mb=128, timeout_seconds=5
        )
        event = {"pathParameters": {"mode": "sleep"}, "queryStringParameters": {"seconds": "5"}}
        with ThreadPoolExecutor(1) as executor:
            running = executor.submit(
                pool.invoke, "functions/echo/", "app.lambda_handler", event, context, 10.0
            )
            time.sleep(0.3)
            started = time.monotonic()
            pool._workers[0].process.kill()
            outcome = running.result(timeout=5)
        assert outcome.finished
        assert outcome.error is not None
        assert time.monotonic() - started < 3
    finally:
        pool.stop()
