"""A Lambda cold import, reproduced: one function's handler module imported in a fresh interpreter.

The child sees the function the way Lambda lays it out: its folder first on the path (``/var/task``,
so the handler is ``import app``), then the layer (``/opt/python``). Its environment holds only
``PATH`` and ``PYTHONPATH``: importing a handler must read no configuration and do no I/O, so a
handler that needs more to import fails here. bench/cold_start_bench.py times these imports;
tests/architecture/test_cold_imports.py checks which modules each one loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FUNCTIONS_DIR",
    "ColdImport",
    "cold_import",
    "function_names",
    "import_environment",
    "third_party",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = REPO_ROOT / "functions"
LAYER_DIR = REPO_ROOT / "layers" / "payments"
TIMEOUT_SECONDS = 60

# Timed with perf_counter inside the child, so interpreter start-up and exit are not counted.
_PROBE = """
import json, sys, time
started = time.perf_counter()
import {module}
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "modules": sorted(sys.modules)}}))
"""


@dataclass(frozen=True, slots=True)
class ColdImport:
    """What one import in a fresh interpreter cost and loaded."""

    seconds: float  # the import statement alone
    process_seconds: float  # the whole child, start to exit
    modules: frozenset[str]  # sys.modules after the import
    stderr: str  # the child's diagnostics (-X importtime writes its report here)


def function_names() -> list[str]:
    """Every function folder that has a handler module (functions/<name>/app.py)."""
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/app.py"))


def import_environment(function: str | None) -> dict[str, str]:
    """The child's whole environment: PATH, and the function's folder then the layer as paths."""
    paths = [str(LAYER_DIR)]
    if function is not None:
        paths.insert(0, str(FUNCTIONS_DIR / function))
    return {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(paths)}


def cold_import(function: str | None, *, python_options: Sequence[str] = ()) -> ColdImport:
    """Import ``functions/<function>/app.py`` (``None``: ``import boto3`` alone) in a new process.

    ``python_options`` go to the interpreter (e.g. ``("-X", "importtime")``). A failed import
    raises ``RuntimeError`` with the child's stderr.
    """
    module = "boto3" if function is None else "app"
    folder = REPO_ROOT if function is None else FUNCTIONS_DIR / function
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *python_options, "-c", _PROBE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        env=import_environment(function),
        cwd=folder,
        check=False,
    )
    process_seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"importing {module} in {folder} failed: {done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return ColdImport(
        seconds=float(report["seconds"]),
        process_seconds=process_seconds,
        modules=frozenset(report["modules"]),
        stderr=done.stderr,
    )


def third_party(modules: frozenset[str]) -> set[str]:
    """The top-level names in ``modules`` that are neither the stdlib, ours, nor private."""
    tops = {name.split(".", 1)[0] for name in modules}
    ours = {"app", "payments"}
    return {name for name in tops - ours - set(sys.stdlib_module_names) if not name.startswith("_")}
