"""Child server processes of the local stack (DynamoDB Local, moto's server): a free port, wait
until one listens, stop it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


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
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
