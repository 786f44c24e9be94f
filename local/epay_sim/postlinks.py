"""postLink / failurePostLink: ePay's notification of a final outcome (epay-api.md section 6)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

from .cards import ISSUER, card_type
from .models import LedgerEntry, NotifyLinks, PostLinkDelivery
from .state import SimState
from .wire import is_loopback_url, json_default, kz_time

SUCCESS_STATUSES = ("AUTH", "CHARGE", "VERIFIED")


class PostLinks:
    """Builds notifications and delivers them from daemon threads, to loopback hosts only."""

    def __init__(self, state: SimState) -> None:
        self._state = state

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
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        data = json.dumps(payload).encode("utf-8")
        for _ in range(copies):
            if state.stopping.is_set():
                return
            delivery = PostLinkDelivery(url, payload, at=state.now())
            request = urllib.request.Request(
                url, data=data, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with opener.open(request, timeout=5) as answer:
                    delivery.status = answer.status
            except urllib.error.HTTPError as exc:
                delivery.status = exc.code
            except (urllib.error.URLError, OSError) as exc:
                delivery.error = str(exc)
            with state.lock:
                state.postlinks.append(delivery)
                state.postlink_sent.notify_all()
