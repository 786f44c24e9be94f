"""The unit tier's guard holds: a unit test cannot reach the network, even on loopback."""

from __future__ import annotations

import socket

import pytest
import urllib3


def test_a_unit_test_cannot_connect_even_to_loopback() -> None:
    # Given a plain socket / When it connects to loopback / Then the guard refuses
    with socket.socket() as sock, pytest.raises(RuntimeError, match="must not open sockets"):
        sock.connect(("127.0.0.1", 9))


def test_a_unit_test_cannot_listen() -> None:
    with socket.socket() as sock, pytest.raises(RuntimeError, match="must not open sockets"):
        sock.bind(("127.0.0.1", 0))


def test_an_http_client_in_a_unit_test_fails_fast() -> None:
    # Given urllib3 (the ePay client's transport) / When it sends / Then no connection is made
    with pytest.raises(RuntimeError, match="must not open sockets"):
        urllib3.PoolManager(retries=False).request("GET", "http://127.0.0.1:9/")
