"""postLink notifications sent to a loopback merchant endpoint."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3

from local.epay_sim import CARD_AUTH, CARD_INSUFFICIENT_FUNDS, TEST_TERMINAL_CODE, EpaySimulator
from tests.simulator.epay_client import auth_body, invoice_token, new_invoice, post_auth


class _Receiver:
    """A loopback merchant endpoint that stores every postLink body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                with receiver.arrived:
                    receiver.bodies.append(body)
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
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout=timeout)
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    yield server
    server.close()


def test_postlink_success_and_failure(
    http: urllib3.PoolManager, sim: EpaySimulator, receiver: _Receiver
) -> None:
    # Given tokens carrying postLink, failurePostLink and secret_hash
    ok_invoice, bad_invoice = new_invoice(), new_invoice()
    links = {
        "postLink": f"{receiver.url}/ok",
        "failurePostLink": f"{receiver.url}/fail",
        "secret_hash": "hash-123",
    }
    ok_token = invoice_token(http, sim, ok_invoice, **links)
    bad_token = invoice_token(http, sim, bad_invoice, **links)
    # When one auth succeeds and one is declined
    post_auth(http, sim, ok_token, auth_body(ok_invoice, CARD_AUTH))
    post_auth(http, sim, bad_token, auth_body(bad_invoice, CARD_INSUFFICIENT_FUNDS))
    # Then both notifications arrive with ePay's fields
    bodies = {body["invoiceId"]: body for body in receiver.wait_for(2)}
    ok, bad = bodies[ok_invoice], bodies[bad_invoice]
    assert ok["code"] == "ok"
    assert ok["reasonCode"] == 0
    assert ok["secret_hash"] == "hash-123"
    # And the terminal is named by its 8-digit code, as ePay's records show it
    assert ok["terminal"] == TEST_TERMINAL_CODE
    assert ok["amount"] == 100
    # And dateTime carries fractional seconds
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+05:00", ok["dateTime"])
    assert ok["reference"] == sim.ledger[ok_invoice].reference
    assert bad["code"] == "error"
    assert bad["reasonCode"] == 484
    deliveries = {d.payload["invoiceId"]: d.url for d in sim.wait_for_postlinks(2)}
    assert deliveries == {ok_invoice: f"{receiver.url}/ok", bad_invoice: f"{receiver.url}/fail"}


def test_postlink_duplicates_and_non_loopback_is_never_sent(
    http: urllib3.PoolManager, sim: EpaySimulator, receiver: _Receiver
) -> None:
    # Given the simulator duplicates notifications
    sim.postlink_duplicates = 1
    try:
        invoice = new_invoice()
        token = invoice_token(http, sim, invoice, postLink=f"{receiver.url}/ok")
        # When one auth succeeds
        post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
        # Then the same notification arrives twice
        bodies = receiver.wait_for(2)
        assert len(bodies) == 2
        assert bodies[0] == bodies[1]
    finally:
        sim.postlink_duplicates = 0
    # And a postLink to a non-loopback host is recorded but never sent
    other = new_invoice()
    token = invoice_token(http, sim, other, postLink="http://192.0.2.10/hook")
    post_auth(http, sim, token, auth_body(other, CARD_AUTH))
    (refused,) = [d for d in sim.postlinks if d.payload["invoiceId"] == other]
    assert refused.status is None
    assert refused.error is not None
