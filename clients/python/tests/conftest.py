"""The client's unit tests: no sockets (every request goes to a fake transport)."""

from __future__ import annotations

import socket
from typing import Any, NoReturn

import pytest


class SocketUsedError(RuntimeError):
    """A client unit test tried to use the network."""


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise SocketUsedError("client unit tests must not open sockets: use FakeTransport")


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connect, bind and DNS lookup for the duration of the test."""
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)
