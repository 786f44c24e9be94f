"""moto's server (``moto.server``, what ``moto_server`` runs) in a process of its own, on loopback.

The same server as ``moto.server.ThreadedMotoServer``, but its CPU is not spent under the GIL of
the process that runs the functions (docs/decisions.md). ``stop()`` ends it (its state goes with
it).
"""

from __future__ import annotations

import subprocess
import sys

from local.processes import ChildServer, guarded, wait_listening

# moto's own server (werkzeug, one thread per request), its access log off; warnings still show.
_MOTO_SERVER = (
    "import logging, sys\n"
    "logging.getLogger('werkzeug').setLevel(logging.WARNING)\n"
    "from moto.server import main\n"
    "main(sys.argv[1:])\n"
)
MOTO_START_TIMEOUT_SECONDS = 60.0


class MotoServerError(RuntimeError):
    """moto's server did not start."""


class MotoServerProcess(ChildServer):
    """moto's server in a child process; ``launch`` then ``wait_ready``, or ``start``."""

    def start(self) -> MotoServerProcess:
        """Start the process; wait until it answers (fails fast when it exits)."""
        return self.launch().wait_ready()

    def launch(self) -> MotoServerProcess:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        self._process = subprocess.Popen(
            guarded([sys.executable, "-c", _MOTO_SERVER, "-H", self.host, "-p", str(self.port)]),
            stdin=subprocess.PIPE,  # held open: the guard ends the server when it closes
            stdout=subprocess.DEVNULL,
            # A process group of its own: Ctrl-C on `make run` reaches the stack's process,
            # which stops this one after the functions and pollers that still use it.
            process_group=0,
        )
        return self

    def wait_ready(self) -> MotoServerProcess:
        """Wait until the launched process accepts connections (fails fast when it exits)."""
        if self._process is None:
            raise MotoServerError("moto's server is not launched")
        wait_listening(
            self._process,
            self.host,
            self.port,
            MOTO_START_TIMEOUT_SECONDS,
            lambda reason: MotoServerError(f"moto's server {reason}"),
        )
        return self
