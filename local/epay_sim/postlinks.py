"""postLink / failurePostLink: ePay's notification of a final outcome (epay-api.md section 6)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import urllib.parse
from typing import Any

from .cards import ISSUER, card_type
from .models import LedgerEntry, NotifyLinks, PostLinkDelivery
from .state import SimState
from .wire import is_loopback_url, json_default, kz_time

SUCCESS_STATUSES = ("AUTH", "CHARGE", "VERIFIED")
DELIVERY_TIMEOUT = 5.0  # seconds, per copy
MAX_IDLE_PER_ORIGIN = 16

type _Origin = tuple[str, str, int]


class ConnectionPool:
    """Keep-alive connections to postLink hosts, reused across deliveries (thread-safe).

    Building a urllib opener per delivery loads the system CA bundle every time (about 15 ms of
    CPU on the machine that measured it); one pool pays for an SSL context once and skips the
    TCP handshake on a kept-alive connection. Every connection has Nagle's algorithm off
    (``http.client`` sets TCP_NODELAY on connect).
    """

    def __init__(self, timeout: float = DELIVERY_TIMEOUT) -> None:
        self.timeout = timeout
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self.opened = 0  # connections made, for tests and benchmarks

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body`` to ``url``; the answer's status. Raises OSError / HTTPException."""
        parts = urllib.parse.urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port or _default_port(parts.scheme))
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        connection = self._take(origin)
        if connection is not None:
            try:
                return self._exchange(origin, connection, target, body, headers)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                # The host closed the idle connection before reading this request (a fresh
                # connection would not have met that): send it once more on a new one.
                connection.close()
        return self._exchange(origin, self._connect(origin), target, body, headers)

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for connection in idle:
            connection.close()

    def _exchange(
        self,
        origin: _Origin,
        connection: http.client.HTTPConnection,
        target: str,
        body: bytes,
        headers: dict[str, str],
    ) -> int:
        try:
            connection.request("POST", target, body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
        except BaseException:
            connection.close()
            raise
        if answer.will_close:
            connection.close()
        else:
            self._give_back(origin, connection)
        return answer.status

    def _take(self, origin: _Origin) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(origin)
            return idle.pop() if idle else None

    def _give_back(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                idle.append(connection)
                return
        connection.close()

    def _connect(self, origin: _Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        connection: http.client.HTTPConnection
        if scheme == "https":
            with self._lock:
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                context = self._ssl
            connection = http.client.HTTPSConnection(
                host, port, timeout=self.timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        connection.connect()
        # http.client already does this; stated so a change there cannot bring Nagle back.
        if connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.opened += 1
        return connection


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class PostLinks:
    """Builds notifications and delivers them from daemon threads, to loopback hosts only."""

    def __init__(self, state: SimState) -> None:
        self._state = state
        self.pool = ConnectionPool()

    def close(self) -> None:
        """Close the kept-alive delivery connections (the simulator is stopping)."""
        self.pool.close()

    def notify(self, entry: LedgerEntry) -> None:
        """Notify the invoice's postLink (failures: failurePostLink, else postLink)."""
        state = self._state
        with state.lock:
            links = state.links.get(entry.transaction_id)
            if links is None or state.settings.postlink_drop:
                return
            success = entry.status_name in SUCCESS_STATUSES
            url = links.post_link if success else (links.failure_post_link or links.post_link)
            if not url:
                return
            payload = self._payload(entry, links, success)
            if not is_loopback_url(url):
                state.postlinks.append(
                    PostLinkDelivery(url, payload, error="not sent: host is not loopback")
                )
                return
            copies = 1 + max(0, state.settings.postlink_duplicates)
            delay = state.settings.postlink_delay
        threading.Thread(
            target=self._deliver,
            args=(url, payload, copies, delay),
            name="epay-sim-postlink",
            daemon=True,
        ).start()

    def wait_for(self, count: int, timeout: float) -> list[PostLinkDelivery]:
        """Wait until ``count`` deliveries are recorded (or timeout); return them all."""
        state = self._state
        with state.postlink_sent:
            state.postlink_sent.wait_for(lambda: len(state.postlinks) >= count, timeout=timeout)
            return list(state.postlinks)

    def _payload(self, entry: LedgerEntry, links: NotifyLinks, success: bool) -> dict[str, Any]:
        terminal = self._state.settings.postlink_terminal_name(entry.terminal)
        payload = {
            "id": entry.transaction_id,
            "dateTime": kz_time(self._state.now(), "microseconds"),
            "invoiceId": entry.invoice_id,
            "invoiceIdAlt": entry.invoice_id_alt,
            "amount": json_default(entry.amount),
            "currency": entry.currency,
            "terminal": terminal,
            "accountId": entry.account_id,
            "description": entry.description,
            "language": entry.language,
            "name": entry.name,
            "email": entry.email,
            "phone": entry.phone,
            "cardMask": entry.card_mask,
            "cardType": card_type(entry.card_mask),
            "cardId": entry.card_id,
            "issuer": ISSUER if entry.card_mask else "",
            "reference": entry.reference,
            "approvalCode": entry.approval_code,
            "secure": "yes" if entry.secure else "no",
            "secureDetails": "",
            "code": "ok" if success else "error",
            "reason": entry.reason,
            "reasonCode": self._state.settings.reason_code(entry.reason_code),
            "secret_hash": links.secret_hash,
            "ip": "127.0.0.1",
            "ipCountry": "KZ",
            "ipCity": "ALMATY",
            "ipRegion": "",
            "ipDistrict": "",
            "ipLatitude": 43.25,
            "ipLongitude": 76.95,
        }
        if terminal is None:  # ``postlink_terminal = "none"``: the field is left out
            del payload["terminal"]
        return payload

    def _deliver(self, url: str, payload: dict[str, Any], copies: int, delay: float) -> None:
        state = self._state
        if delay > 0 and state.stopping.wait(delay):
            return
        data = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        for _ in range(copies):
            if state.stopping.is_set():
                return
            delivery = PostLinkDelivery(url, payload, at=state.now())
            try:
                delivery.status = self.pool.post(url, data, headers)
            except (OSError, http.client.HTTPException) as exc:
                delivery.error = str(exc) or type(exc).__name__
            with state.lock:
                state.postlinks.append(delivery)
                state.postlink_sent.notify_all()
