"""Retries: bounded, jittered, classified; the same Idempotency-Key on every attempt."""

from __future__ import annotations

from typing import Any

import pytest

from client_fakes import CHARGE_ID, FakeTransport, answer, charge_json, error
from epay_payments_client import (
    ApiConnectionError,
    Conflict,
    PaymentsApiError,
    PaymentsClient,
    RateLimited,
    ServiceUnavailable,
)
from epay_payments_client.transport import HttpResponse

CARD = "c0000000-0000-4000-8000-000000000001"


class Clock:
    """Records the sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def client_for(
    script: list[HttpResponse | ApiConnectionError], *, rand: float = 0.5, **options: Any
) -> tuple[PaymentsClient, FakeTransport, Clock]:
    transport = FakeTransport(script)
    clock = Clock()
    client = PaymentsClient.local(
        "http://127.0.0.1:3000",
        transport=transport,
        sleep=clock.sleep,
        rand=lambda: rand,
        **options,
    )
    return client, transport, clock


def create_charge(client: PaymentsClient, **options: Any) -> Any:
    return client.create_charge(
        amount="1500.00",
        currency="KZT",
        card_id=CARD,
        account_id="customer-42",
        description="Order 42",
        **options,
    )


def test_the_same_generated_key_is_sent_on_every_retry() -> None:
    # Given no answer, then a request in flight, then the charge
    client, transport, clock = client_for(
        [
            ApiConnectionError("timed out"),
            error(409, "idempotency_in_flight"),
            answer(200, charge_json(), {"Idempotent-Replayed": "true"}),
        ]
    )

    # When a charge is created without a key
    charge = create_charge(client)

    # Then one key was generated and sent three times, and the replay is visible
    keys = {sent.header("Idempotency-Key") for sent in transport.sent}
    assert len(transport.sent) == 3
    assert len(keys) == 1
    assert None not in keys
    assert charge.replayed is True
    assert len(clock.sleeps) == 2


def test_the_callers_key_is_used_and_reused() -> None:
    client, transport, _ = client_for([error(502, "gateway_error"), answer(201, charge_json())])

    create_charge(client, idempotency_key="order-42")

    assert [s.header("Idempotency-Key") for s in transport.sent] == ["order-42", "order-42"]


def test_a_refund_keeps_its_key_across_retries() -> None:
    refund = {
        "id": "re_1",
        "chargeId": CHARGE_ID,
        "amount": 500,
        "currency": "KZT",
        "status": "SUCCEEDED",
        "reason": None,
        "metadata": {},
        "createdAt": "2026-11-28T12:00:00Z",
        "updatedAt": "2026-11-28T12:00:00Z",
        "error": None,
    }
    client, transport, _ = client_for([error(500, "internal_error"), answer(201, refund)])

    client.create_refund(CHARGE_ID, amount=500)

    assert len({s.header("Idempotency-Key") for s in transport.sent}) == 1


@pytest.mark.parametrize(
    ("status", "code", "retried"),
    [
        (409, "idempotency_in_flight", True),
        (409, "capture_in_progress", True),
        (409, "card_removal_in_progress", True),
        (409, "invalid_state", False),
        (409, "conflict", False),
        (409, "concurrent_update", True),
        (429, "rate_limited", True),
        (500, "internal_error", True),
        (502, "gateway_unknown_outcome", True),
        (503, "store_unavailable", True),
        (504, "timeout", True),
        (400, "validation_error", False),
        (403, "missing_authentication", False),
        (404, "not_found", False),
        (413, "payload_too_large", False),
        (415, "unsupported_media_type", False),
        (422, "idempotency_key_reused", False),
    ],
)
def test_retry_classification(status: int, code: str, retried: bool) -> None:
    # Given one error answer, then success
    client, transport, clock = client_for([error(status, code), answer(200, charge_json())])

    # When the charge is read
    if retried:
        client.get_charge(CHARGE_ID)
    else:
        with pytest.raises(PaymentsApiError) as raised:
            client.get_charge(CHARGE_ID)
        assert raised.value.code == code
        assert raised.value.http_status == status

    # Then only the retryable ones were sent again
    assert len(transport.sent) == (2 if retried else 1)
    assert len(clock.sleeps) == (1 if retried else 0)


def test_retries_are_bounded_by_max_retries() -> None:
    client, transport, clock = client_for([error(503, "store_unavailable")] * 4, max_retries=3)

    with pytest.raises(ServiceUnavailable):
        client.get_charge(CHARGE_ID)

    assert len(transport.sent) == 4
    assert len(clock.sleeps) == 3


def test_no_retries_when_max_retries_is_zero() -> None:
    client, transport, _ = client_for([ApiConnectionError("refused")], max_retries=0)

    with pytest.raises(ApiConnectionError) as raised:
        create_charge(client, idempotency_key="k-1")

    assert len(transport.sent) == 1
    assert raised.value.idempotency_key == "k-1"


def test_the_backoff_doubles_and_is_jittered_by_rand() -> None:
    # Given rand() always 0 (the shortest jitter: half the backoff)
    client, _, clock = client_for([error(503, "store_unavailable")] * 3, rand=0.0)
    with pytest.raises(ServiceUnavailable):
        client.get_charge(CHARGE_ID)
    assert clock.sleeps == [0.25, 0.5]

    # And rand() always 1 (the whole backoff)
    client, _, clock = client_for([error(503, "store_unavailable")] * 3, rand=1.0)
    with pytest.raises(ServiceUnavailable):
        client.get_charge(CHARGE_ID)
    assert clock.sleeps == [0.5, 1.0]


def test_retry_after_is_honoured() -> None:
    client, _, clock = client_for(
        [error(429, "rate_limited", **{"Retry-After": "3"}), answer(200, charge_json())]
    )

    client.get_charge(CHARGE_ID)

    assert clock.sleeps == [3.0]


def test_a_long_retry_after_is_raised_not_slept() -> None:
    client, transport, clock = client_for(
        [error(503, "invoice_space_exhausted", **{"Retry-After": "3600"})]
    )

    with pytest.raises(ServiceUnavailable) as raised:
        create_charge(client)

    assert raised.value.retry_after == 3600.0
    assert len(transport.sent) == 1
    assert clock.sleeps == []


def test_a_failed_charge_is_not_retried_under_the_same_key() -> None:
    # ePay unreachable: the charge is FAILED under this key, a retry would only replay the 503
    client, transport, _ = client_for([error(503, "gateway_unavailable")])

    with pytest.raises(ServiceUnavailable) as raised:
        create_charge(client)

    assert raised.value.code == "gateway_unavailable"
    assert len(transport.sent) == 1


def test_a_capture_in_progress_is_retried_until_it_settles() -> None:
    client, transport, _ = client_for(
        [error(409, "capture_in_progress"), answer(200, charge_json())]
    )

    charge = client.capture_charge(CHARGE_ID)

    assert charge.status == "CAPTURED"
    assert len(transport.sent) == 2


def test_the_last_error_is_raised_when_retries_run_out() -> None:
    client, _, _ = client_for([error(409, "idempotency_in_flight")] * 3)

    with pytest.raises(Conflict) as raised:
        create_charge(client)

    assert raised.value.code == "idempotency_in_flight"


def test_rate_limited_is_its_own_class() -> None:
    client, _, _ = client_for([error(429, "rate_limited")], max_retries=0)
    with pytest.raises(RateLimited):
        client.get_charge(CHARGE_ID)
