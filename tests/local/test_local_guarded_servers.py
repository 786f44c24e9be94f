"""A child server of the local stack (local.processes.guarded) never outlives what started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A starter that launches a guarded server (a sleeper carrying `marker`), says so, and waits.
_STARTER = """
import subprocess, sys, time
from local.processes import guarded
server = subprocess.Popen(
    guarded([sys.executable, "-c", "import time; time.sleep(120)", sys.argv[1]]),
    stdin=subprocess.PIPE,
    process_group=0,
)
print(server.pid, flush=True)
time.sleep(120)
"""


def _running(marker: str) -> list[int]:
    """Pids of live processes whose command line carries `marker` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _wait_until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_a_server_ends_when_its_starter_is_killed() -> None:
    # Given a starter process that launched a guarded server (in a process group of its own,
    # as DynamoDB Local and moto's server are, so signals to the starter's group miss it)
    marker = f"guarded-{uuid.uuid4().hex}"
    starter = subprocess.Popen(
        [sys.executable, "-c", _STARTER, marker],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert starter.stdout is not None
    assert int(starter.stdout.readline()) > 0  # the guard started
    assert _wait_until(lambda: len(_running(marker)) == 2, 10), _running(marker)  # guard + server

    # When the starter is killed outright (no chance to stop anything)
    starter.send_signal(signal.SIGKILL)
    starter.wait(timeout=10)

    # Then the guard and its server are gone within seconds
    assert _wait_until(lambda: not _running(marker), 15), _running(marker)


def test_stop_ends_the_guard_and_its_server() -> None:
    # Given a guarded server started here
    from local.processes import guarded, stop

    marker = f"guarded-{uuid.uuid4().hex}"
    server = subprocess.Popen(
        guarded([sys.executable, "-c", "import time; time.sleep(120)", marker]),
        stdin=subprocess.PIPE,
        process_group=0,
    )
    assert _wait_until(lambda: len(_running(marker)) == 2, 10)

    # When it is stopped the usual way
    stop(server)

    # Then both processes are gone, and the guard said how its server ended
    assert _wait_until(lambda: not _running(marker), 15), _running(marker)
    assert server.returncode is not None
