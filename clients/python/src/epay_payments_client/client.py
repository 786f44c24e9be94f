"""`PaymentsClient`: every merchant operation of the payments API, signed, retried safely.

Retries (stripe-python's rules, bounded by `max_retries`, jittered exponential backoff with the
sleep and the randomness injectable) happen only where repeating cannot take money twice:

* no answer at all (connect failure, timeout, broken connection);
* 409 `idempotency_in_flight`, `capture_in_progress`, `card_removal_in_progress` (another request
  holds the resource; the repeat reads its outcome) and `concurrent_update` (a conditional write
  lost a race and changed nothing);
* 429 and 5xx, waiting at least `Retry-After` (an answer asking for more than
  `max_retry_after` seconds is raised at once, its `retry_after` set).

Every POST that takes an `Idempotency-Key` gets a uuid4 one when the caller gives none, and the
client's own retries send the same key, so the API answers the first outcome instead of acting
twice. Every other write is idempotent by state on the server (capture, pause, cancel, ...).
Other 4xx answers are never retried.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from epay_payments_client.errors import (
    ApiConnectionError,
    PaymentsApiError,
    UnexpectedResponse,
    error_from_response,
)
from epay_payments_client.models import (
    Card,
    CardSetup,
    Charge,
    Interval,
    JsonObject,
    Page,
    Refund,
    Subscription,
)
from epay_payments_client.transport import (
    HttpResponse,
    SigV4Signer,
    Transport,
    Urllib3Transport,
    dumps,
    loads,
)

logger = logging.getLogger("epay_payments_client")

T = TypeVar("T")
Amount = Decimal | int | str
Timestamp = datetime | str

USER_AGENT = "epay-payments-client-python/0.1.0"
# 409s that mean "another request holds this resource right now" (or a conditional write lost
# a race and changed nothing: the service marks `concurrent_update` retryable too).
RETRYABLE_CONFLICTS = frozenset(
    {
        "idempotency_in_flight",
        "capture_in_progress",
        "card_removal_in_progress",
        "concurrent_update",
    }
)
CHARGE_FINAL_CODES = frozenset({"gateway_unavailable"})


def should_retry(error: PaymentsApiError) -> bool:
    """Whether repeating the request (same key) may succeed and cannot act twice."""
    if isinstance(error, ApiConnectionError):
        return True
    status = error.http_status
    if status is None:
        return False
    if status == 409:
        return error.code in RETRYABLE_CONFLICTS
    return status == 429 or status >= 500


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: JsonObject

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed", "").lower() == "true"


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the arguments the caller left out (None): the API takes absent, not null."""
    return {key: value for key, value in values.items() if value is not None}


def _amount(value: Amount | None) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float | bool):
        raise TypeError("an amount must be a Decimal, an int or a str, never a float")
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _timestamp(value: Timestamp | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("a timestamp must carry its time zone (e.g. datetime.now(UTC))")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _segment(value: str) -> str:
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe="")


class PaymentsClient:
    """A client of the payments API for a merchant's backend.

    `base_url` is the merchant API's URL, the stack's `ApiUrl` output (e.g.
    `https://a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com`). Requests are signed with SigV4
    (`execute-api`) using `credentials` or botocore's default chain and `region` (else read from
    the URL or the AWS config), unless `unsigned`.
    `timeout` is the connect and the read timeout of each attempt, in seconds.
    """

    initial_delay = 0.5  # seconds before the first retry (then doubled, jittered)
    max_delay = 8.0
    max_retry_after = 20.0  # a longer Retry-After is raised to the caller, not slept

    def __init__(
        self,
        base_url: str,
        *,
        region: str | None = None,
        credentials: Any | None = None,
        unsigned: bool = False,
        timeout: float = 10.0,
        max_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        transport: Transport | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self._sleep = sleep
        self._rand = rand
        self._transport: Transport = transport or Urllib3Transport()
        self._signer = None if unsigned else SigV4Signer(region, credentials, parts.hostname)

    @classmethod
    def local(cls, base_url: str = "http://127.0.0.1:3000", **options: Any) -> PaymentsClient:
        """A client of the local stack (`make run`), which does not check signatures."""
        return cls(base_url, unsigned=True, **options)

    def close(self) -> None:
        """Release the transport's connections."""
        close = getattr(self._transport, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> PaymentsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- charges -----------------------------------------------------------------------------

    def create_charge(
        self,
        *,
        amount: Amount,
        currency: str,
        card_id: str,
        account_id: str,
        description: str,
        capture: str | None = None,
        recurrent: bool | None = None,
        invoice_id: str | None = None,
        invoice_id_alt: str | None = None,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        language: str | None = None,
        back_link: str | None = None,
        failure_back_link: str | None = None,
        idempotency_key: str | None = None,
    ) -> Charge:
        """Charge a saved card (POST /charges). A decline is a DECLINED charge, not an error;
        `charge.replayed` is True when the key's earlier outcome was answered."""
        body = _compact(
            {
                "amount": _amount(amount),
                "currency": currency,
                "cardId": card_id,
                "accountId": account_id,
                "description": description,
                "capture": capture,
                "recurrent": recurrent,
                "invoiceId": invoice_id,
                "invoiceIdAlt": invoice_id_alt,
                "name": name,
                "email": email,
                "phone": phone,
                "language": language,
                "backLink": back_link,
                "failureBackLink": failure_back_link,
            }
        )
        answer = self._request(
            "POST",
            "/charges",
            body=body,
            idempotency_key=idempotency_key or _new_key(),
            # ePay was unreachable and the charge is FAILED under this key: the same key would
            # answer the same 503, so only a new key (a new charge) can try again.
            final_codes=CHARGE_FINAL_CODES,
        )
        return self._read(Charge.from_json, answer, replayed=answer.replayed)

    def get_charge(self, charge_id: str) -> Charge:
        """Read a charge (GET /charges/{id})."""
        answer = self._request("GET", f"/charges/{_segment(charge_id)}")
        return self._read(Charge.from_json, answer)

    def capture_charge(self, charge_id: str, amount: Amount | None = None) -> Charge:
        """Capture an AUTHORIZED charge, wholly or `amount` of it (capturing again answers the
        captured charge)."""
        body = _compact({"amount": _amount(amount)}) or None
        answer = self._request("POST", f"/charges/{_segment(charge_id)}/capture", body=body)
        return self._read(Charge.from_json, answer)

    def cancel_charge(self, charge_id: str, *, idempotency_key: str | None = None) -> Charge:
        """Void an AUTHORIZED or REQUIRES_3DS charge (a CANCELLED one is answered as it is)."""
        answer = self._request(
            "POST",
            f"/charges/{_segment(charge_id)}/cancel",
            idempotency_key=idempotency_key or _new_key(),
        )
        return self._read(Charge.from_json, answer)

    def reconcile_charge(self, charge_id: str) -> Charge:
        """Ask ePay's status API about the charge now and settle it (an operator's action)."""
        answer = self._request("POST", f"/charges/{_segment(charge_id)}/reconcile")
        return self._read(Charge.from_json, answer)

    def search_charges(
        self,
        *,
        account_id: str | None = None,
        status: str | None = None,
        subscription_id: str | None = None,
        created_from: Timestamp | None = None,
        created_to: Timestamp | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Charge]:
        """One page of charges (GET /charges) by account, status, subscription, creation time."""
        query = {
            "accountId": account_id,
            "status": status,
            "subscriptionId": subscription_id,
            "createdFrom": _timestamp(created_from),
            "createdTo": _timestamp(created_to),
            "limit": limit,
            "cursor": cursor,
        }
        answer = self._request("GET", "/charges", query=query)
        return self._page(Charge.from_json, answer)

    def iter_charges(
        self,
        *,
        account_id: str | None = None,
        status: str | None = None,
        subscription_id: str | None = None,
        created_from: Timestamp | None = None,
        created_to: Timestamp | None = None,
        limit: int | None = None,
    ) -> Iterator[Charge]:
        """Every charge `search_charges` finds, page after page (`limit` is the page size)."""
        return self._iterate(
            lambda cursor: self.search_charges(
                account_id=account_id,
                status=status,
                subscription_id=subscription_id,
                created_from=created_from,
                created_to=created_to,
                limit=limit,
                cursor=cursor,
            )
        )

    # --- refunds -----------------------------------------------------------------------------

    def create_refund(
        self,
        charge_id: str,
        *,
        amount: Amount | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Refund:
        """Refund a CAPTURED or PARTIALLY_REFUNDED charge (no amount: the rest of it)."""
        body = _compact(
            {
                "amount": _amount(amount),
                "reason": reason,
                "metadata": dict(metadata) if metadata is not None else None,
            }
        )
        answer = self._request(
            "POST",
            f"/charges/{_segment(charge_id)}/refunds",
            body=body or None,
            idempotency_key=idempotency_key or _new_key(),
        )
        return self._read(Refund.from_json, answer, replayed=answer.replayed)

    def list_refunds(self, charge_id: str) -> list[Refund]:
        """A charge's refunds, oldest first."""
        answer = self._request("GET", f"/charges/{_segment(charge_id)}/refunds")
        return self._page(Refund.from_json, answer).data

    def get_refund(self, refund_id: str) -> Refund:
        """Read a refund (GET /refunds/{id})."""
        answer = self._request("GET", f"/refunds/{_segment(refund_id)}")
        return self._read(Refund.from_json, answer)

    # --- subscriptions -----------------------------------------------------------------------

    def create_subscription(
        self,
        *,
        account_id: str,
        card_id: str,
        amount: Amount,
        currency: str,
        description: str,
        interval: Interval,
        start_at: Timestamp | None = None,
        email: str | None = None,
        phone: str | None = None,
        back_link: str | None = None,
        failure_back_link: str | None = None,
        idempotency_key: str | None = None,
    ) -> Subscription:
        """Create a subscription (POST /subscriptions); cycle 0 is charged at `start_at`."""
        body = _compact(
            {
                "accountId": account_id,
                "cardId": card_id,
                "amount": _amount(amount),
                "currency": currency,
                "description": description,
                "interval": interval.to_json(),
                "startAt": _timestamp(start_at),
                "email": email,
                "phone": phone,
                "backLink": back_link,
                "failureBackLink": failure_back_link,
            }
        )
        answer = self._request(
            "POST", "/subscriptions", body=body, idempotency_key=idempotency_key or _new_key()
        )
        return self._read(Subscription.from_json, answer, replayed=answer.replayed)

    def get_subscription(self, subscription_id: str) -> Subscription:
        """Read a subscription."""
        answer = self._request("GET", f"/subscriptions/{_segment(subscription_id)}")
        return self._read(Subscription.from_json, answer)

    def list_subscriptions(
        self, account_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Subscription]:
        """One page of an account's subscriptions, oldest first."""
        query = {"accountId": account_id, "limit": limit, "cursor": cursor}
        answer = self._request("GET", "/subscriptions", query=query)
        return self._page(Subscription.from_json, answer)

    def iter_subscriptions(
        self, account_id: str, *, limit: int | None = None
    ) -> Iterator[Subscription]:
        """Every subscription of an account, page after page."""
        return self._iterate(
            lambda cursor: self.list_subscriptions(account_id, limit=limit, cursor=cursor)
        )

    def update_subscription(
        self,
        subscription_id: str,
        *,
        card_id: str | None = None,
        amount: Amount | None = None,
        description: str | None = None,
    ) -> Subscription:
        """Change the card (from the next attempt), the amount (from the next cycle) or the
        description (PATCH /subscriptions/{id})."""
        body = _compact({"cardId": card_id, "amount": _amount(amount), "description": description})
        if not body:
            raise ValueError("give at least one of card_id, amount, description")
        answer = self._request("PATCH", f"/subscriptions/{_segment(subscription_id)}", body=body)
        return self._read(Subscription.from_json, answer)

    def pause_subscription(self, subscription_id: str) -> Subscription:
        """Stop charging (repeatable)."""
        return self._subscription_action(subscription_id, "pause")

    def resume_subscription(self, subscription_id: str) -> Subscription:
        """Continue from the earliest cycle whose period has not ended (repeatable)."""
        return self._subscription_action(subscription_id, "resume")

    def cancel_subscription(self, subscription_id: str) -> Subscription:
        """Cancel for good (repeatable)."""
        return self._subscription_action(subscription_id, "cancel")

    def _subscription_action(self, subscription_id: str, action: str) -> Subscription:
        answer = self._request("POST", f"/subscriptions/{_segment(subscription_id)}/{action}")
        return self._read(Subscription.from_json, answer)

    # --- cards -------------------------------------------------------------------------------

    def create_card_setup(
        self,
        *,
        account_id: str,
        back_link: str,
        mode: str = "verify",
        failure_back_link: str | None = None,
        language: str | None = None,
        description: str | None = None,
        amount: Amount | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> CardSetup:
        """Start saving a card (POST /card-setups): send the customer to the answer's `url`.
        `mode="pay"` takes `amount`, `currency` and `description` (a first payment)."""
        body = _compact(
            {
                "accountId": account_id,
                "backLink": back_link,
                "mode": mode,
                "failureBackLink": failure_back_link,
                "language": language,
                "description": description,
                "amount": _amount(amount),
                "currency": currency,
            }
        )
        answer = self._request(
            "POST", "/card-setups", body=body, idempotency_key=idempotency_key or _new_key()
        )
        return self._read(CardSetup.from_json, answer, replayed=answer.replayed)

    def get_card_setup(self, setup_id: str) -> CardSetup:
        """Read a card setup (its `card_id` once SUCCEEDED)."""
        answer = self._request("GET", f"/card-setups/{_segment(setup_id)}")
        return self._read(CardSetup.from_json, answer)

    def list_cards(
        self,
        account_id: str,
        *,
        refresh: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Card]:
        """One page of an account's saved cards, newest first (`refresh`: compare with ePay's
        list first)."""
        query = {"refresh": "true" if refresh else None, "limit": limit, "cursor": cursor}
        answer = self._request("GET", f"/accounts/{_segment(account_id)}/cards", query=query)
        return self._page(Card.from_json, answer)

    def iter_cards(
        self, account_id: str, *, refresh: bool = False, limit: int | None = None
    ) -> Iterator[Card]:
        """Every saved card of an account (`refresh` applies to the first page only)."""
        return self._iterate(
            lambda cursor: self.list_cards(
                account_id, refresh=refresh and cursor is None, limit=limit, cursor=cursor
            )
        )

    def remove_card(self, account_id: str, card_id: str) -> Card:
        """Deactivate a card at ePay and mark it REMOVED (a removed card is answered as it is)."""
        path = f"/accounts/{_segment(account_id)}/cards/{_segment(card_id)}"
        answer = self._request("DELETE", path)
        return self._read(Card.from_json, answer)

    # --- plumbing ----------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        final_codes: frozenset[str] = frozenset(),
    ) -> _Answer:
        """Send one logical request: sign each attempt, retry what is safe, raise typed errors."""
        url = self.base_url + path
        params = _compact(query or {})
        if params:
            url += "?" + urlencode({k: str(v) for k, v in params.items()}, quote_via=quote)
        data = dumps(body).encode("utf-8") if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        attempt = 0
        while True:
            try:
                response = self._send(method, url, headers, data, idempotency_key)
            except PaymentsApiError as error:
                delay = None if error.code in final_codes else self._retry_delay(error, attempt)
                if delay is None:
                    raise
                logger.info(
                    "retrying %s %s after %s (attempt %d, in %.2fs)",
                    method,
                    path,
                    error.code,
                    attempt + 1,
                    delay,
                )
                self._sleep(delay)
                attempt += 1
                continue
            return self._decode(response)

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: bytes | None,
        idempotency_key: str | None,
    ) -> HttpResponse:
        signed = self._signer.sign(method, url, headers, data) if self._signer else dict(headers)
        try:
            response = self._transport.send(method, url, signed, data, self.timeout)
        except ApiConnectionError as error:
            error.idempotency_key = idempotency_key
            raise
        if response.status >= 400:
            raise error_from_response(
                response.status, response.headers, response.body, idempotency_key=idempotency_key
            )
        return response

    def _retry_delay(self, error: PaymentsApiError, attempt: int) -> float | None:
        """Seconds to wait before retrying, or None when the error is final."""
        if attempt >= self.max_retries or not should_retry(error):
            return None
        if error.retry_after is not None and error.retry_after > self.max_retry_after:
            return None
        backoff = min(self.initial_delay * 2.0**attempt, self.max_delay)
        jittered = backoff * (0.5 + 0.5 * self._rand())
        return max(jittered, error.retry_after or 0.0)

    @staticmethod
    def _decode(response: HttpResponse) -> _Answer:
        if not response.body:
            return _Answer(response.status, response.headers, {})
        try:
            body = loads(response.body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise UnexpectedResponse(
                f"the answer is not JSON (HTTP {response.status})", http_status=response.status
            ) from exc
        if not isinstance(body, dict):
            raise UnexpectedResponse("the answer is not a JSON object", http_status=response.status)
        return _Answer(response.status, response.headers, body)

    def _read(self, reader: Callable[..., T], answer: _Answer, **options: Any) -> T:
        try:
            return reader(answer.body, **options)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise UnexpectedResponse(
                f"the answer is not the documented resource ({type(exc).__name__}: {exc})",
                http_status=answer.status,
            ) from exc

    def _page(self, item: Callable[[JsonObject], T], answer: _Answer) -> Page[T]:
        return self._read(lambda body: Page.from_json(body, item), answer)

    @staticmethod
    def _iterate(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            page = fetch(cursor)
            yield from page.data
            if page.next_cursor is None or page.next_cursor == cursor:
                return
            cursor = page.next_cursor


def _new_key() -> str:
    return str(uuid.uuid4())
