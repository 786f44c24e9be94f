"""Handler worker processes (opt-in): the local API's invocations spread over N Python processes.

In-process (the default, what tests use), every handler runs in the API's process, so one GIL
caps the functions, the local API and the ePay simulator together at one core. With a
:class:`HandlerPool`, the local API still parses HTTP, builds the events and translates the
answers, but each invocation is sent to one of ``processes`` worker processes, each a warm
"container" for every function: it applies the functions' environment, puts the layers on
``sys.path``, imports every handler once (``load_handler``) and runs invocations with
:func:`~local.apigw.runtime.call_handler` (own log keys), several at a time on threads, as the
in-process runtime does. An invocation goes to the worker with the fewest invocations in flight
(ties: the first), so one client keeps hitting the same warm worker. State lives in DynamoDB
Local / moto (their own processes), so every worker sees the same data.

Lifecycle, so that nothing hangs and nothing is left behind:

* a worker is a fresh interpreter (``python -c`` running :func:`serve` on FD, no fork after threads
  started, and unlike multiprocessing's "spawn" it never re-imports the parent's ``__main__``),
  talking to the parent over a socket pair with :class:`multiprocessing.connection.Connection`
  framing (pickles); it ignores SIGINT (Ctrl-C reaches the whole process group; the parent stops
  it);
* :meth:`HandlerPool.start` waits at most ``start_timeout`` seconds for every worker's "ready"
  (it imported every handler) and stops them all on any failure;
* a worker exits as soon as its pipe to the parent closes (the parent ended, even by SIGKILL),
  or when told to stop; :meth:`HandlerPool.stop` tells each, waits briefly, then terminates and
  kills;
* an invocation waits at most its ``wait`` (the function's Timeout, at most the integration
  timeout); after that it is abandoned like an in-process one (the worker finishes it and the
  result is dropped). A worker that dies fails its invocations in flight (502) and takes no more.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, Final

from local.apigw.runtime import (
    Handler,
    Invocation,
    Job,
    LambdaContext,
    call_handler,
    load_handler,
    run_on_thread,
)

__all__ = ["HandlerPool", "HandlerPoolError", "WorkerError"]

logger = logging.getLogger("local.apigw")

#: How long :meth:`HandlerPool.start` waits for every worker to import its handlers.
START_TIMEOUT_SECONDS: Final = 60.0
#: How long :meth:`HandlerPool.stop` waits for a worker to exit before it terminates it.
STOP_GRACE_SECONDS: Final = 3.0
LOG_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]
#: A worker's program: the connection's file descriptor is its argument.
_WORKER: Final = "import sys\nfrom local.apigw.pool import serve\nserve(int(sys.argv[1]))\n"


class HandlerPoolError(RuntimeError):
    """The worker processes did not start."""


class WorkerError(Exception):
    """What a handler raised in a worker process (its type name, message and traceback)."""

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(
            f"{type_name}: {message}"
            + (f"\n(in the worker) {remote_traceback}" if remote_traceback else "")
        )
        self.type_name = type_name
        self.remote_traceback = remote_traceback


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to become a warm container (sent to it pickled)."""

    env: dict[str, str]
    layers: list[str]
    handlers: list[tuple[str, str]]  # (code_uri, handler), relative to base_dir
    base_dir: str
    #: Where the worker's stdout (the functions' JSON logs) goes; None: the parent's stdout.
    output: str | None = None
    #: Logging levels to mirror: "" for the root logger, then named loggers.
    log_levels: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- the worker


def serve(fd: int) -> None:
    """A worker process (``python -c`` calls it with FD): read its :class:`WorkerSetup` from
    the connection on ``fd``, set up, say "ready", run invocations until told to stop or
    orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us on Ctrl-C
    connection = Connection(fd)
    try:
        setup = WorkerSetup(**connection.recv())
    except (EOFError, OSError):
        os._exit(1)
    root_level = setup.log_levels.get("", logging.WARNING)
    stream = sys.stdout if setup.output is not None else sys.stderr
    logging.basicConfig(level=root_level, format=LOG_FORMAT, stream=stream)
    for name, level in setup.log_levels.items():
        if name:
            logging.getLogger(name).setLevel(level)
    send_lock = threading.Lock()
    try:
        os.environ.update(setup.env)
        for layer in setup.layers:
            if layer not in sys.path:
                sys.path.insert(0, layer)
        for code_uri, handler in setup.handlers:
            load_handler(code_uri, handler, setup.base_dir)
    except BaseException as error:
        connection.send(("failed", f"{type(error).__name__}: {error}"))
        sys.stdout.flush()
        os._exit(1)
    connection.send(("ready", os.getpid()))
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):  # the parent is gone: so are we
            break
        if job is None:  # stop
            break
        run_on_thread(_job_runner(connection, send_lock, setup.base_dir, job), "lambda-worker")
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os._exit(0)  # invocations still running are abandoned, as the parent abandoned them


def _job_runner(
    connection: Connection, send_lock: threading.Lock, base_dir: str, job: tuple[Any, ...]
) -> Job:
    job_id, code_uri, handler_name, event, context_fields = job

    def run() -> Callable[[], None]:
        try:
            context = LambdaContext(**context_fields)
            threading.current_thread().name = f"lambda-{context.function_name}"
            handler = load_handler(code_uri, handler_name, base_dir)
            answer: tuple[Any, ...] = (job_id, True, call_handler(handler, event, context))
        except BaseException as error:  # reported to the parent, like Lambda's function error
            remote = "".join(traceback.format_exception(error))
            answer = (job_id, False, (type(error).__name__, str(error), remote))
        return functools.partial(_send_answer, connection, send_lock, job_id, answer)

    return run


def _send_answer(
    connection: Connection, send_lock: threading.Lock, job_id: Any, answer: tuple[Any, ...]
) -> None:
    try:
        with send_lock:
            connection.send(answer)
    except OSError:
        pass  # the parent is gone
    except Exception as error:  # the result does not pickle: report that instead
        remote = "".join(traceback.format_exception(error))
        with send_lock, contextlib.suppress(OSError, ValueError):
            connection.send((job_id, False, (type(error).__name__, str(error), remote)))


# ----------------------------------------------------------------------------- the parent


class _Pending:
    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome = Invocation(finished=False)


class _Worker:
    """The parent's side of one worker process: its pipe, invocations in flight, a reader."""

    def __init__(
        self, index: int, process: subprocess.Popen[bytes], connection: Connection
    ) -> None:
        self.index = index
        self.process = process
        self.connection = connection
        self.alive = True
        self.in_flight = 0
        self.pending: dict[int, _Pending] = {}
        self.send_lock = threading.Lock()
        self.reader: threading.Thread | None = None


class HandlerPool:
    """``processes`` worker processes that run the functions' handlers (see the module doc)."""

    def __init__(
        self,
        processes: int,
        *,
        env: Mapping[str, str],
        layers: Sequence[str],
        handlers: Sequence[tuple[str, str]],
        base_dir: str | Path,
        output: str | None = None,
        start_timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        if processes < 1:
            raise ValueError("a handler pool needs at least one process")
        self.processes = processes
        self._setup = WorkerSetup(
            env=dict(env),
            layers=list(layers),
            handlers=list(dict.fromkeys(handlers)),
            base_dir=str(base_dir),
            output=output,
            log_levels=_log_levels(),
        )
        self._start_timeout = start_timeout
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # picks a worker, counts in flight
        self._ids = itertools.count(1)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and the bench's CPU accounting)."""
        return [w.process.pid for w in self._workers]

    def start(self) -> HandlerPool:
        """Start the workers; return when every one is ready (else stop them all and raise)."""
        env = dict(os.environ)
        # The worker imports local.apigw.pool: the repository root first on its path.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        )
        output: IO[bytes] | None = None
        try:
            if self._setup.output is not None:
                output = open(self._setup.output, "ab")  # noqa: SIM115 # closed below
            for index in range(self.processes):
                parent_end, child_end = socket.socketpair()
                with child_end:
                    process = subprocess.Popen(
                        [sys.executable, "-c", _WORKER, str(child_end.fileno())],
                        pass_fds=[child_end.fileno()],
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        env=env,
                        cwd=_REPO_ROOT,
                    )
                worker = _Worker(index, process, Connection(parent_end.detach()))
                self._workers.append(worker)
                worker.connection.send(asdict(self._setup))
            deadline = time.monotonic() + self._start_timeout
            for worker in self._workers:
                self._await_ready(worker, deadline)
        except BaseException:
            self.stop()
            raise
        finally:
            if output is not None:
                output.close()
        for worker in self._workers:
            worker.reader = threading.Thread(
                target=self._read, args=(worker,), name=f"local-lambda-{worker.index}", daemon=True
            )
            worker.reader.start()
        logger.info("handlers run in %d worker processes %s", self.processes, self.pids)
        return self

    def _await_ready(self, worker: _Worker, deadline: float) -> None:
        left = max(0.0, deadline - time.monotonic())
        try:
            ready = worker.connection.poll(left)
            message = worker.connection.recv() if ready else None
        except (EOFError, OSError):
            message = ("failed", f"exited ({worker.process.poll()})")
        if message is None:
            raise HandlerPoolError(
                f"handler worker {worker.index} did not start within {self._start_timeout:.0f} s"
            )
        if message[0] != "ready":
            raise HandlerPoolError(f"handler worker {worker.index} failed: {message[1]}")

    def invoke(
        self,
        code_uri: str,
        handler: str,
        event: dict[str, Any],
        context: LambdaContext,
        wait: float,
    ) -> Invocation:
        """Run ``handler(event, context)`` in a worker; wait at most ``wait`` seconds (then the
        invocation is abandoned: ``finished`` false)."""
        pending = _Pending()
        with self._lock:
            workers = [w for w in self._workers if w.alive]
            if not workers:
                error = WorkerError("WorkerError", "no handler worker process is running", "")
                return Invocation(True, error=error)
            worker = min(workers, key=lambda w: w.in_flight)
            job_id = next(self._ids)
            worker.in_flight += 1
            worker.pending[job_id] = pending
        fields = {
            "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "timeout_seconds": context.get_remaining_time_in_millis() / 1000,
            "aws_request_id": context.aws_request_id,
        }
        try:
            with worker.send_lock:
                worker.connection.send((job_id, code_uri, handler, event, fields))
        except (OSError, ValueError) as failed:
            self._settle(worker, job_id, Invocation(True, error=failed))
        if not pending.done.wait(wait):
            return Invocation(finished=False)
        return pending.outcome

    def handler(self, code_uri: str, handler: str) -> Handler:
        """A stand-in for ``load_handler(code_uri, handler)`` whose calls run in a worker: it
        returns the handler's result or raises what it raised (:class:`WorkerError`), and
        :class:`TimeoutError` past the context's remaining time."""

        def remote(event: dict[str, Any], context: Any) -> Any:
            wait = context.get_remaining_time_in_millis() / 1000
            outcome = self.invoke(code_uri, handler, event, context, wait)
            if not outcome.finished:
                raise TimeoutError(f"{context.function_name} timed out after {wait:.1f} s")
            if outcome.error is not None:
                raise outcome.error
            return outcome.result

        return remote

    def _settle(self, worker: _Worker, job_id: int, outcome: Invocation) -> None:
        with self._lock:
            pending = worker.pending.pop(job_id, None)
            if pending is None:
                return
            worker.in_flight -= 1
        pending.outcome = outcome
        pending.done.set()

    def _read(self, worker: _Worker) -> None:
        """The reader thread of one worker: hands each answer to its waiting invocation."""
        while True:
            try:
                job_id, ok, payload = worker.connection.recv()
            except (EOFError, OSError, ValueError):
                break
            if ok:
                outcome = Invocation(True, result=payload)
            else:
                outcome = Invocation(True, error=WorkerError(*payload))
            self._settle(worker, job_id, outcome)
        with self._lock:
            was_alive, worker.alive = worker.alive, False
            stranded = list(worker.pending)
        if was_alive:
            logger.error(
                "handler worker %d (pid %s) exited (%s); %d invocation(s) in flight failed",
                worker.index,
                worker.process.pid,
                worker.process.poll(),
                len(stranded),
            )
        died = WorkerError("WorkerError", "the handler worker process exited", "")
        for job_id in stranded:
            self._settle(worker, job_id, Invocation(True, error=died))

    def stop(self) -> None:
        """Tell every worker to stop; terminate (then kill) those still running after a grace."""
        workers, self._workers = self._workers, []
        for worker in workers:
            with self._lock:
                worker.alive = False
            with contextlib.suppress(OSError, ValueError), worker.send_lock:
                worker.connection.send(None)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in workers:
            process = worker.process
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.0, deadline - time.monotonic()))
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(STOP_GRACE_SECONDS)
            if process.poll() is None:
                process.kill()
                process.wait(STOP_GRACE_SECONDS)
            worker.connection.close()
            if worker.reader is not None:
                worker.reader.join(timeout=STOP_GRACE_SECONDS)

    def __enter__(self) -> HandlerPool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _log_levels() -> dict[str, int]:
    """This process's root level and the levels set on named loggers (mirrored in workers)."""
    levels = {"": logging.getLogger().getEffectiveLevel()}
    for name, known in logging.root.manager.loggerDict.items():
        if isinstance(known, logging.Logger) and known.level != logging.NOTSET:
            levels[name] = known.level
    return levels
