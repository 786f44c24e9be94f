"""Child server processes of the local stack (DynamoDB Local, moto's server): a free port, wait
until one listens, stop it, and never outlive the process that started them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable

# A server's guard: runs the server as its child and ends it (SIGTERM, then SIGKILL after 10 s)
# when the guard is told to stop (SIGTERM) or when its stdin reaches EOF, which happens when the
# process that started it is gone - even killed with SIGKILL, when it could stop nothing.
_GUARD = """
import os, signal, subprocess, sys, threading
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
threading.Thread(target=lambda: (sys.stdin.buffer.read(), done.set()), daemon=True).start()
threading.Thread(target=lambda: (child.wait(), done.set()), daemon=True).start()
while not done.wait(1.0):
    pass
if child.poll() is None:
    child.terminate()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
os._exit(child.wait() & 0xFF)
"""


def guarded(command: list[str]) -> list[str]:
    """`command` run under a guard that ends it when its starter is gone. Start it with
    `stdin=subprocess.PIPE` and keep that pipe open: its closing is the signal."""
    return [sys.executable, "-c", _GUARD, *command]


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(
    process: subprocess.Popen[bytes],
    host: str,
    port: int,
    timeout: float,
    failed: Callable[[str], Exception],
    poll: float = 0.05,
) -> None:
    """Return once `process` accepts connections on host:port. Raises `failed(reason)` when it
    exits first (the reason: its return code) or when `timeout` seconds pass (it is stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise failed(f"exited ({process.returncode})")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(poll)
    stop(process)
    raise failed(f"did not start within {timeout:.0f} s")


class ChildServer:
    """A server run as a child process on loopback: its address, and `stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The endpoint to give boto3."""
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """End the process (its state goes with it)."""
        stop(self._process)
        self._process = None


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """End the process if it runs: terminate, then kill after 10 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=12)  # a guard gives its server 10 s
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    if process.stdin is not None:
        process.stdin.close()
