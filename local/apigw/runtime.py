"""An in-process Lambda runtime: loads handlers by file path, gives them a context, runs them.

Every function runs in this process, concurrently in threads, sharing module state: one warm
"container" per function, its module loaded once and cached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
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
    "LambdaContext",
    "invoke",
    "load_handler",
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
_handler_lock = threading.Lock()


def load_handler(code_uri: str | Path, handler: str, base_dir: str | Path | None = None) -> Handler:
    """Import ``<code_uri>/<module>.py`` by file path and return its handler function (cached).

    Every function has an ``app.py``, so modules get a unique name derived from their folder
    (``_lambda_charges_<hash of the folder>_app``) instead of the plain ``app``. ``code_uri`` is
    relative to ``base_dir`` (the template's folder; default: the current directory) unless
    absolute.
    """
    module_path, _, attribute = handler.rpartition(".")
    if not module_path or not attribute:
        raise ValueError(f"handler {handler!r} is not of the form module.function")
    root = (Path(base_dir or ".") / code_uri).resolve()
    # "app" -> app.py; "pkg.mod" -> pkg/mod.py (Lambda's dotted module names).
    file = root.joinpath(*module_path.split(".")).with_suffix(".py")
    key = (str(file.resolve()), attribute)
    with _handler_lock:
        if key in _handler_cache:
            return _handler_cache[key]
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:8]
        slug = re.sub(r"\W", "_", root.name or "root") + "_" + digest
        module_name = f"_lambda_{slug}_{re.sub(r'\W', '_', module_path)}"
        module = _import_file(module_name, file)
        # Only callability can be checked here; the signature is the module's business.
        function: Handler | None = getattr(module, attribute, None)
        if not callable(function):
            raise AttributeError(f"{file} has no callable {attribute!r}")
        _handler_cache[key] = function
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


def invoke(
    handler: Handler, event: dict[str, Any], context: LambdaContext, wait: float
) -> Invocation:
    """Run ``handler(event, context)`` in a daemon thread and wait at most ``wait`` seconds.

    A handler still running after that is abandoned, not killed (threads cannot be): its thread
    finishes in the background and its result is dropped.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = handler(event, context)
        except BaseException as error:  # reported to the caller, like Lambda's function error
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"lambda-{context.function_name}", daemon=True)
    worker.start()
    worker.join(wait)
    if worker.is_alive():
        return Invocation(finished=False)
    return Invocation(True, outcome.get("result"), outcome.get("error"))
