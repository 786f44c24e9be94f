"""An in-process Lambda runtime: loads handlers by file path, gives them a context, runs them.

Every function runs in this process, concurrently in threads, sharing module state: one warm
"container" per function, its module loaded once and cached.

Log keys are the exception: Powertools' Logger keeps its keys (``function_name``,
``function_request_id``, ``cold_start``, ``correlation_id`` and whatever a handler appends) in its
formatter, one set per process. In Lambda a process runs one invocation at a time, so that is
right; here several invocations of different functions run at once and would overwrite each
other's keys (a postLink line logged as ``ChargesFunction``). :func:`call_handler`, which every
local invocation goes through (the API's :func:`invoke` and the workers in ``local.workers``),
therefore gives each invocation its own copy of those keys (:func:`invocation_log_keys`). Nothing
in the functions or the layer changes; outside a local invocation the keys stay process-wide.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib.util
import os
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from local.apigw.event import LOCAL_ACCOUNT_ID, LOCAL_REGION

__all__ = [
    "MAX_LAMBDA_PAYLOAD_BYTES",
    "Handler",
    "Invocation",
    "Job",
    "LambdaContext",
    "call_handler",
    "invocation_log_keys",
    "invoke",
    "load_handler",
    "run_on_thread",
]

Handler = Callable[[dict[str, Any], Any], Any]

MAX_LAMBDA_PAYLOAD_BYTES: Final = 6 * 1024 * 1024  # Lambda synchronous request/response limit


@dataclass(slots=True)
class LambdaContext:
    """The parts of Lambda's context object that handlers and Powertools use."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"
            )
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            day = datetime.now(UTC).strftime("%Y/%m/%d")
            self.log_stream_name = f"{day}/[{self.function_version}]{uuid.uuid4().hex}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout (never negative)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# ---------------------------------------------------------------------------------- loading

_handler_cache: dict[tuple[str, str], Handler] = {}
# The same handlers by the arguments as given: every request looks its handler up, and resolving
# the path (realpath) each time was a good part of the local API's own cost.
_handler_by_arguments: dict[tuple[str, str, str], Handler] = {}
_handler_lock = threading.Lock()


def load_handler(code_uri: str | Path, handler: str, base_dir: str | Path | None = None) -> Handler:
    """Import ``<code_uri>/<module>.py`` by file path and return its handler function (cached).

    Every function has an ``app.py``, so modules get a unique name derived from their folder
    (``_lambda_charges_<hash of the folder>_app``) instead of the plain ``app``. ``code_uri`` is
    relative to ``base_dir`` (the template's folder; default: the current directory) unless
    absolute.
    """
    # abspath: a relative base means the working directory of this call, as resolve() below.
    given = (os.path.abspath(base_dir or "."), str(code_uri), handler)
    found = _handler_by_arguments.get(given)
    if found is not None:
        return found
    module_path, _, attribute = handler.rpartition(".")
    if not module_path or not attribute:
        raise ValueError(f"handler {handler!r} is not of the form module.function")
    root = (Path(base_dir or ".") / code_uri).resolve()
    # "app" -> app.py; "pkg.mod" -> pkg/mod.py (Lambda's dotted module names).
    file = root.joinpath(*module_path.split(".")).with_suffix(".py")
    key = (str(file.resolve()), attribute)
    with _handler_lock:
        if key in _handler_cache:
            _handler_by_arguments[given] = _handler_cache[key]
            return _handler_cache[key]
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
        slug = re.sub(r"\W", "_", root.name or "root") + "_" + digest
        module_name = f"_lambda_{slug}_{re.sub(r'\W', '_', module_path)}"
        module = _import_file(module_name, file)
        # Only callability can be checked here; the signature is the module's business.
        function: Handler | None = getattr(module, attribute, None)
        if not callable(function):
            raise AttributeError(f"{file} has no callable {attribute!r}")
        _handler_cache[key] = _handler_by_arguments[given] = function
        return function


def _import_file(module_name: str, file: Path) -> ModuleType:
    if not file.is_file():
        raise FileNotFoundError(f"handler module {file} does not exist")
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


# -------------------------------------------------------------------------------- invoking


@dataclass(frozen=True, slots=True)
class Invocation:
    """How one invocation ended: still running (``finished`` false), raised, or returned."""

    finished: bool
    result: Any = None
    error: BaseException | None = None


#: Work for an invocation thread: it runs the invocation and returns what hands its answer over.
Job = Callable[[], Callable[[], None]]

#: How long an idle invocation thread waits for the next invocation before it ends.
WORKER_IDLE_SECONDS: Final = 60.0


class _Workers:
    """Daemon threads that run invocations one after another; one starts only when none is idle.

    A thread per invocation cost a thread start (and two GIL hand-offs) on every request. A Lambda
    container also runs its invocations on one reused thread. An abandoned invocation keeps its
    thread until it ends, then the thread is idle again.
    """

    def __init__(self, idle_seconds: float = WORKER_IDLE_SECONDS) -> None:
        self._jobs: queue.SimpleQueue[tuple[Job, str]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Threads waiting for a job that no caller has counted on yet. Invariant (under the
        # lock): waiting threads == idle + jobs queued, so a queued job always has a taker.
        self._idle = 0
        self._idle_seconds = idle_seconds
        self.started = 0  # threads started, for tests

    def run(self, job: Job, name: str) -> None:
        """Run ``job`` on an idle thread, else on a new one named ``name``; the hand-over it
        returns is called once the thread counts as idle again."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put((job, name))
                return
            self.started += 1
        threading.Thread(target=self._work, args=(job, name), name=name, daemon=True).start()

    def _work(self, job: Job, name: str) -> None:
        while True:
            threading.current_thread().name = name
            hand_over = job()
            with self._lock:
                self._idle += 1
            # Only now may the caller see the answer: its next invocation finds this thread idle
            # instead of starting another one.
            hand_over()
            try:
                job, name = self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # no caller counted on this thread: it may end
                        self._idle -= 1
                        return
                job, name = self._jobs.get()  # a job was queued for "an idle thread" meanwhile


_workers = _Workers()


def run_on_thread(job: Job, name: str) -> None:
    """Run ``job`` on an idle invocation thread of this process, else on a new one; then call
    the hand-over it returns (what gives its answer to the caller)."""
    _workers.run(job, name)


def invoke(
    handler: Handler, event: dict[str, Any], context: LambdaContext, wait: float
) -> Invocation:
    """Run ``handler(event, context)`` on a daemon thread and wait at most ``wait`` seconds.

    A handler still running after that is abandoned, not killed (threads cannot be): its thread
    finishes in the background and its result is dropped.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> Callable[[], None]:
        try:
            outcome["result"] = call_handler(handler, event, context)
        except BaseException as error:  # reported to the caller, like Lambda's function error
            outcome["error"] = error
        return done.set

    _workers.run(run, f"lambda-{context.function_name}")
    if not done.wait(wait):
        return Invocation(finished=False)
    return Invocation(True, outcome.get("result"), outcome.get("error"))


def call_handler(handler: Handler, event: dict[str, Any], context: Any) -> Any:
    """Run one invocation in this thread: ``handler(event, context)`` with its own log keys.

    The handler runs in a fresh :mod:`contextvars` context (Powertools' ``thread_safe_*`` keys
    live there) inside :func:`invocation_log_keys`, so what it appends to the shared Logger is
    seen by its own log lines only, never by another function's concurrent invocation nor by
    the next invocation this thread runs.
    """
    with invocation_log_keys():
        return contextvars.Context().run(handler, event, context)


# -------------------------------------------------------------------- per-invocation log keys

# The keys of the invocation this thread runs: {formatter: its log_format for this invocation}.
# Absent (None) outside an invocation: then the formatter's own, process-wide, keys are used.
_invocation = threading.local()
_keys_lock = threading.Lock()
_keys_installed = threading.Event()


@contextmanager
def invocation_log_keys() -> Iterator[None]:
    """Within this block, this thread's Powertools log keys belong to one invocation.

    Every Powertools formatter starts the block with a copy of its process-wide keys (what the
    module set up at import); ``inject_lambda_context``, ``append_keys``, ``set_correlation_id``,
    ``remove_keys`` and ``clear_state`` then change that copy only, and it is dropped at the end.
    Threads the handler starts itself see the process-wide keys (no ``function_name``).
    """
    _install_invocation_log_format()
    previous = getattr(_invocation, "keys", None)
    _invocation.keys = {}
    try:
        yield
    finally:
        _invocation.keys = previous


class _InvocationLogFormat:
    """A data descriptor standing for ``LambdaPowertoolsFormatter.log_format``.

    Outside an invocation it reads and writes the instance's own ``log_format`` (exactly what
    Powertools does). Inside :func:`invocation_log_keys` it reads and writes the invocation's
    copy instead. A formatter created during an invocation writes its initial keys to the
    instance (they are its process-wide defaults), until the invocation replaces them.
    """

    _NAME = "log_format"

    def __get__(self, formatter: Any, owner: type | None = None) -> Any:
        if formatter is None:
            return self
        shared = formatter.__dict__.get(self._NAME)
        if shared is None:
            raise AttributeError(self._NAME)
        keys: dict[Any, Any] | None = getattr(_invocation, "keys", None)
        if keys is None:
            return shared
        own = keys.get(formatter)
        if own is None:
            own = keys[formatter] = dict(shared)
        return own

    def __set__(self, formatter: Any, value: Any) -> None:
        keys: dict[Any, Any] | None = getattr(_invocation, "keys", None)
        if keys is None:
            formatter.__dict__[self._NAME] = value
        elif self._NAME not in formatter.__dict__:  # being constructed: these are its defaults
            formatter.__dict__[self._NAME] = keys[formatter] = value
        else:
            keys[formatter] = value


def _install_invocation_log_format() -> None:
    """Put :class:`_InvocationLogFormat` on Powertools' formatter class (once; no Powertools:
    nothing to do)."""
    if _keys_installed.is_set():
        return
    with _keys_lock:
        if _keys_installed.is_set():
            return
        try:
            from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
        except ImportError:  # a template whose functions do not use Powertools
            _keys_installed.set()
            return
        if not isinstance(vars(LambdaPowertoolsFormatter).get("log_format"), _InvocationLogFormat):
            # Powertools assigns log_format per instance; a data descriptor on the class takes
            # precedence over the instance's own attribute, which it keeps as the shared keys.
            setattr(LambdaPowertoolsFormatter, "log_format", _InvocationLogFormat())  # noqa: B010
        _keys_installed.set()
