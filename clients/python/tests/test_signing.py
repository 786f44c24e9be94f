"""SigV4: every attempt is signed for execute-api; the local stack's client signs nothing."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from botocore.credentials import Credentials

from client_fakes import CHARGE_ID, FakeTransport, answer, charge_json, error
from epay_payments_client import ConfigurationError, PaymentsClient

API = "https://abc123.execute-api.eu-central-1.amazonaws.com/prod"


def signed_client(transport: FakeTransport, **options: Any) -> PaymentsClient:
    return PaymentsClient(
        API,
        credentials=Credentials("AKIDEXAMPLE", "secret", "session-token"),
        transport=transport,
        sleep=lambda _s: None,
        **options,
    )


def test_requests_carry_a_sigv4_signature_for_execute_api() -> None:
    # Given a signed client with session credentials and an API in eu-central-1
    transport = FakeTransport([answer(201, charge_json())])
    client = signed_client(transport)

    # When it creates a charge
    client.create_charge(
        amount="1500.00",
        currency="KZT",
        card_id="c0000000-0000-4000-8000-000000000001",
        account_id="customer-42",
        description="Order 42",
    )

    # Then the request is signed for execute-api in the URL's region, over the key and body
    (sent,) = transport.sent
    authorization = sent.header("Authorization") or ""
    assert re.match(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-central-1/execute-api/aws4_request,",
        authorization,
    )
    signed_headers = re.search(r"SignedHeaders=([^,]+)", authorization)
    assert signed_headers is not None
    assert {"host", "x-amz-date", "idempotency-key", "content-type"} <= set(
        signed_headers.group(1).split(";")
    )
    assert re.fullmatch(r"\d{8}T\d{6}Z", sent.header("X-Amz-Date") or "")
    assert sent.header("X-Amz-Security-Token") == "session-token"
    assert sent.url == f"{API}/charges"


def test_each_retry_is_signed_again() -> None:
    # Given an API that is unavailable once
    transport = FakeTransport([error(503, "store_unavailable"), answer(200, charge_json())])
    client = signed_client(transport, region="us-east-1")

    # When a charge is read
    client.get_charge(CHARGE_ID)

    # Then both attempts carry a signature (the explicit region wins over the URL's)
    assert len(transport.sent) == 2
    for sent in transport.sent:
        assert "/us-east-1/execute-api/" in (sent.header("Authorization") or "")


def test_the_local_client_does_not_sign() -> None:
    transport = FakeTransport([answer(200, charge_json())])
    client = PaymentsClient.local("http://127.0.0.1:3000", transport=transport)

    client.get_charge(CHARGE_ID)

    (sent,) = transport.sent
    assert sent.header("Authorization") is None
    assert sent.header("X-Amz-Date") is None
    assert sent.url == f"http://127.0.0.1:3000/charges/{CHARGE_ID}"


def test_no_credentials_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given botocore's default chain finds nothing
    class EmptySession:
        def get_credentials(self) -> None:
            return None

        def get_config_variable(self, name: str) -> str:
            return "eu-central-1"

    monkeypatch.setattr("botocore.session.get_session", lambda: EmptySession())
    transport = FakeTransport([])
    client = PaymentsClient(API, transport=transport)

    # When a request is made, Then it fails before anything is sent
    with pytest.raises(ConfigurationError) as raised:
        client.get_charge(CHARGE_ID)
    assert raised.value.code == "missing_credentials"
    assert transport.sent == []


def test_the_default_chain_is_used_when_no_credentials_are_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Session:
        def get_credentials(self) -> Credentials:
            return Credentials("AKIDCHAIN", "secret")

        def get_config_variable(self, name: str) -> str:
            return "ap-south-1"

    monkeypatch.setattr("botocore.session.get_session", lambda: Session())
    transport = FakeTransport([answer(200, charge_json())])
    client = PaymentsClient("https://payments.example.kz/v1", transport=transport)

    client.get_charge(CHARGE_ID)

    authorization = transport.sent[0].header("Authorization") or ""
    assert "Credential=AKIDCHAIN/" in authorization
    assert "/ap-south-1/execute-api/" in authorization


def test_a_generated_idempotency_key_is_a_uuid4() -> None:
    transport = FakeTransport([answer(201, charge_json()), answer(201, charge_json())])
    client = signed_client(transport)
    for _ in range(2):
        client.cancel_charge(CHARGE_ID)
    keys = [sent.header("Idempotency-Key") or "" for sent in transport.sent]
    assert all(uuid.UUID(key).version == 4 for key in keys)
    assert keys[0] != keys[1]
