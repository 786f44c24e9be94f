"""postLink delivery over kept-alive connections, and Nagle's algorithm off on the simulator."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3

from local.epay_sim import (
    CARD_AUTH,
    DEFAULT_SCOPE,
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    EpaySimulator,
)
from local.epay_sim.postlinks import ConnectionPool
from tests.simulator.epay_client import auth_body, invoice_token, new_invoice, post_auth


class _Merchant:
    """A loopback endpoint that answers 200 and notes which client port each request came on."""

    def __init__(self, protocol: str) -> None:
        self.ports: list[int] = []
        merchant = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = protocol

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                merchant.ports.append(self.client_address[1])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/postlink"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def keep_alive() -> Iterator[_Merchant]:
    merchant = _Merchant("HTTP/1.1")
    yield merchant
    merchant.close()


def test_deliveries_reuse_one_kept_alive_connection(keep_alive: _Merchant) -> None:
    # Given a pool and a merchant that keeps connections alive
    pool = ConnectionPool()

    # When five postLinks are posted one after the other
    statuses = [
        pool.post(keep_alive.url, b"{}", {"Content-Type": "application/json"}) for _ in range(5)
    ]
    pool.close()

    # Then all are answered over one connection
    assert statuses == [200] * 5
    assert pool.opened == 1
    assert len(set(keep_alive.ports)) == 1


def test_a_connection_the_host_closes_is_not_reused() -> None:
    # Given a merchant that answers HTTP/1.0 (it closes every connection)
    merchant = _Merchant("HTTP/1.0")
    pool = ConnectionPool()
    try:
        # When three postLinks are posted
        statuses = [pool.post(merchant.url, b"{}", {}) for _ in range(3)]
    finally:
        pool.close()
        merchant.close()

    # Then each went on a connection of its own
    assert statuses == [200] * 3
    assert pool.opened == 3


def test_an_idle_connection_closed_by_the_host_is_sent_again_once_on_a_new_one() -> None:
    # Given a host that answers keep-alive, then closes the connection once it is idle
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        for _ in range(2):
            connection, _ = listener.accept()
            with connection:
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(b"{}"):
                    data += connection.recv(4096)
                received.append(data)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                time.sleep(0.1)  # let the client take the answer, then close while it is idle

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    pool = ConnectionPool(timeout=2)
    try:
        # When one postLink is delivered, the host closes the idle connection, and another follows
        first = pool.post(f"http://127.0.0.1:{port}/postlink", b"{}", {})
        time.sleep(0.3)
        second = pool.post(f"http://127.0.0.1:{port}/postlink", b"{}", {})
        server.join(timeout=5)
    finally:
        pool.close()
        listener.close()

    # Then the second went out once more on a new connection, and the host got each exactly once
    assert (first, second) == (200, 200)
    assert pool.opened == 2
    assert len(received) == 2


def test_the_simulator_delivers_postlinks_over_one_connection(
    http: urllib3.PoolManager, sim: EpaySimulator, keep_alive: _Merchant
) -> None:
    # Given approved auths whose postLink is a keep-alive merchant endpoint
    for count in range(1, 5):
        invoice = new_invoice()
        token = invoice_token(http, sim, invoice, "100")
        body = auth_body(invoice, CARD_AUTH, 100, postLink=keep_alive.url)
        assert post_auth(http, sim, token, body).status == 200
        # When each postLink is delivered before the next auth
        sim.wait_for_postlinks(count, timeout=5)

    # Then every delivery succeeded, all on the connection the first one opened
    assert [delivery.status for delivery in sim.postlinks] == [200] * 4
    assert len(set(keep_alive.ports)) == 1


def test_keep_alive_answers_are_not_held_back_by_nagle(sim: EpaySimulator) -> None:
    # Given one keep-alive connection to the simulator
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "scope": DEFAULT_SCOPE,
            "client_id": TEST_CLIENT_ID,
            "client_secret": TEST_CLIENT_SECRET,
        }
    )
    parts = urllib.parse.urlsplit(sim.oauth_url)
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    try:
        # When 20 token requests are sent one after the other on it
        started = time.monotonic()
        for _ in range(20):
            connection.request(
                "POST",
                parts.path,
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
        elapsed = time.monotonic() - started
    finally:
        connection.close()
    # Then none waits for a delayed ACK (~40 ms each with Nagle on; a few ms without)
    assert elapsed < 0.5
