"""A loopback merchant endpoint that stores every postLink body it receives (JSON)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PostLinkReceiver:
    """Serves on 127.0.0.1 in a daemon thread; ``bodies`` in arrival order, with their paths."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                with receiver.arrived:
                    receiver.bodies.append(body)
                    receiver.paths.append(self.path)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def wait_for(self, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Wait until ``count`` bodies arrived (or timeout); return them all."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout=timeout)
            return list(self.bodies)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
