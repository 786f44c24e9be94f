"""Unit tier: no sockets. Every test here runs with the network switched off, so a unit test
that reaches for DynamoDB, ePay or the simulator fails instead of quietly becoming slow."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from payments.observability import logger, metrics


class SocketUsedError(RuntimeError):
    """A unit test tried to use the network."""


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise SocketUsedError("unit tests must not open sockets: use a fake or move it to integration")


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse every connect, bind and DNS lookup for the duration of the test."""
    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    monkeypatch.setattr(socket, "getaddrinfo", _refuse)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test."""
    stream = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    handler.setStream(previous)  # type: ignore[attr-defined]


@pytest.fixture
def fresh_metrics() -> Iterator[None]:
    """No metric left over from an earlier test, and none left behind for the next."""
    metrics.provider.clear_metrics()
    yield
    metrics.provider.clear_metrics()
