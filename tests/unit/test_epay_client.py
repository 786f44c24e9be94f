"""The ePay client against a stubbed transport: the wire format and how outcomes are mapped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from payments.charges.payment_gateway import AuthRequest, InvoiceTokenRequest, Token
from payments.epay.client import EpayClient, RetryPolicy
from payments.errors import (
    GatewayRejectedError,
    GatewayUnavailableError,
    GatewayUnknownOutcomeError,
)
from payments.shared.deadline import Deadline
from payments.shared.payer import Payer
from tests.fakes import FakeResponse, FakeTransport, epay_client

FAR_FUTURE = datetime(2030, 1, 1, tzinfo=UTC)
TOKEN_OK = FakeResponse(
    200,
    b'{"access_token":"tok-1","expires_in":"1200","refresh_token":"","scope":"payment",'
    b'"token_type":"Bearer"}',
)


def client(transport: FakeTransport, sleeps: list[float] | None = None) -> EpayClient:
    record = sleeps if sleeps is not None else []
    return epay_client(
        transport, RetryPolicy(max_retries=2, jitter=lambda: 0.5, sleep=record.append)
    )


def auth_request(**overrides: object) -> AuthRequest:
    fields: dict[str, object] = {
        "invoice_id": "000000042",
        "amount": Decimal("1500.50"),
        "currency": "KZT",
        "card_id": "c0000000-0000-4000-8000-000000000001",
        "account_id": "customer-42",
        "description": "Order 42",
        "language": "rus",
        "recurrent": True,
        "post_link": "https://pay.example/epay/postlink",
        "failure_post_link": "https://pay.example/epay/postlink/failure",
    }
    fields.update(overrides)
    return AuthRequest(**fields)  # type: ignore[arg-type]


def deadline() -> Deadline:
    return Deadline.after(20)


def test_invoice_token_sends_exactly_the_documented_form() -> None:
    # Given ePay answering a token
    transport = FakeTransport([TOKEN_OK])
    # When a token is requested for an invoice
    token = client(transport).invoice_token(
        InvoiceTokenRequest(
            "000000042",
            Decimal("1500.5"),
            "KZT",
            "https://pay.example/epay/postlink",
            "https://pay.example/epay/postlink/failure",
            "s3cr3t-hash",
        ),
        deadline(),
    )
    # Then the form carries ePay's field names, and expires_in as a string is understood
    sent = transport.requests[0]
    assert sent.method == "POST"
    assert sent.url == "https://oauth.test/oauth2/token"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs((sent.body or b"").decode()).items()}
    assert form == {
        "grant_type": "client_credentials",
        "scope": "webapi payment",
        "client_id": "test",
        "client_secret": "client-secret-value",
        "terminal": "terminal-uuid",
        "invoiceID": "000000042",
        "amount": "1500.50",
        "currency": "KZT",
        "postLink": "https://pay.example/epay/postlink",
        "failurePostLink": "https://pay.example/epay/postlink/failure",
        "secret_hash": "s3cr3t-hash",
    }
    assert token.access_token == "tok-1"
    assert "tok-1" not in repr(token)
    assert sent.timeout.connect_timeout == 2.0


def test_auth_sends_exactly_the_documented_json_with_bearer() -> None:
    # Given ePay authorising
    transport = FakeTransport(
        [
            FakeResponse(
                200,
                b'{"id":"tx-1","invoiceID":"000000042","amount":"1500.5","currency":"KZT",'
                b'"status":"AUTH","code":0,"reference":"123456789012","approvalCode":"A1B2C3",'
                b'"cardID":"c0000000","cardMask":"440043******0178","secure3D":null}',
            )
        ]
    )
    token = Token("tok-1", FAR_FUTURE)
    # When a saved card is charged
    result = client(transport).authorize(
        token, auth_request(payer=Payer(name="IVAN PETROV")), deadline()
    )
    # Then the JSON is ePay's, the card id is an object and the token is a Bearer header
    sent = transport.requests[0]
    assert sent.url == "https://api.test/payments/cards/auth"
    assert sent.headers["Authorization"] == "Bearer tok-1"
    assert sent.headers["Content-Type"] == "application/json"
    body = json.loads(sent.body or b"", parse_float=Decimal)
    assert body == {
        "amount": Decimal("1500.50"),
        "currency": "KZT",
        "terminalId": "terminal-uuid",
        "invoiceId": "000000042",
        "description": "Order 42",
        "accountId": "customer-42",
        "language": "rus",
        "paymentType": "cardId",
        "recurrent": True,
        "cardId": {"id": "c0000000-0000-4000-8000-000000000001"},
        "postLink": "https://pay.example/epay/postlink",
        "failurePostLink": "https://pay.example/epay/postlink/failure",
        "name": "IVAN PETROV",
    }
    # And the answer's casing (invoiceID) and string amounts are tolerated
    assert result.status == "AUTH"
    assert result.transaction_id == "tx-1"
    assert result.invoice_id == "000000042"
    assert result.amount == Decimal("1500.5")
    assert result.reference == "123456789012"
    assert result.secure3d is None


def test_auth_3d_answer_carries_secure3d() -> None:
    # Given ePay answering 3D for the auth, with the ACS's PaReq, MD and address
    transport = FakeTransport(
        [
            FakeResponse(
                200,
                b'{"id":"tx-2","invoiceID":"42","status":"3D","code":0,'
                b'"secure3D":{"paReq":"PAREQ","md":"MD1","action":"https://acs.test/3ds"}}',
            )
        ]
    )
    # When a saved card is charged
    result = client(transport).authorize(Token("t", FAR_FUTURE), auth_request(), deadline())
    # Then the result is 3D and carries what the 3DS page needs
    assert result.status == "3D"
    assert result.secure3d is not None
    assert (result.secure3d.pa_req, result.secure3d.md) == ("PAREQ", "MD1")
    assert result.secure3d.action == "https://acs.test/3ds"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (FakeResponse(400, b'{"code":484,"message":"Insufficient funds"}'), GatewayRejectedError),
        (FakeResponse(400, b'{"code":"483","message":"Stolen"}'), GatewayRejectedError),
        (FakeResponse(500, b'{"message":"Internal error"}'), GatewayUnknownOutcomeError),
        (FakeResponse(502, b"<html>bad gateway</html>"), GatewayUnknownOutcomeError),
        (FakeResponse(200, b'{"id":"tx","status":"AU'), GatewayUnknownOutcomeError),
        (FakeResponse(200, b'{"status":"WHAT","code":0}'), GatewayUnknownOutcomeError),
        (ReadTimeoutError(None, "/", "read timed out"), GatewayUnknownOutcomeError),
        (ProtocolError("connection reset"), GatewayUnknownOutcomeError),
        (NewConnectionError(None, "refused"), GatewayUnavailableError),  # type: ignore[arg-type]
    ],
)
def test_auth_outcomes_are_mapped_and_never_retried(
    answer: FakeResponse | Exception, error: type[Exception]
) -> None:
    # Given one answer (or transport failure) of the auth endpoint
    transport = FakeTransport([answer])
    # When the card is charged / Then the outcome is typed and the auth is sent exactly once
    with pytest.raises(error) as caught:
        client(transport).authorize(Token("t", FAR_FUTURE), auth_request(), deadline())
    assert len(transport.requests) == 1
    # And a decline keeps ePay's code, whether it came as a number or a string
    if isinstance(caught.value, GatewayRejectedError):
        assert caught.value.gateway_code in {484, 483}


def test_token_is_retried_with_jittered_backoff_then_succeeds() -> None:
    # Given the token endpoint failing twice with 5xx/refused, then answering
    sleeps: list[float] = []
    transport = FakeTransport(
        [
            FakeResponse(503, b""),
            NewConnectionError(None, "refused"),  # type: ignore[arg-type]
            TOKEN_OK,
        ]
    )
    # And the status API answering "no such invoice"
    transport.answers.append(
        FakeResponse(200, b'{"resultCode":"102","resultMessage":"No such invoice"}')
    )
    # When a terminal token is needed (status call)
    result = client(transport, sleeps).status("000000042", "", deadline())
    # Then it was retried twice, with bounded delays, and the status was read
    assert [r.url for r in transport.requests].count("https://oauth.test/oauth2/token") == 3
    assert sleeps == [pytest.approx(0.15), pytest.approx(0.3)]
    assert result.result_code == "102"
    assert result.transaction is None


def test_token_gives_up_after_the_retry_budget() -> None:
    # Given the token endpoint failing with 500 every time
    transport = FakeTransport([FakeResponse(500, b"")] * 3)
    # When an invoice token is requested / Then ePay is unavailable after 1 try and 2 retries
    with pytest.raises(GatewayUnavailableError):
        client(transport).invoice_token(
            InvoiceTokenRequest("000000042", Decimal(1), "KZT", "https://a", "https://b", "h"),
            deadline(),
        )
    assert len(transport.requests) == 3


def test_status_parses_epay_casing_and_string_numbers() -> None:
    # Given the status API answering CHARGE with ePay's casing and numbers as strings
    transport = FakeTransport(
        [
            TOKEN_OK,
            FakeResponse(
                200,
                b'{"resultCode":"100","resultMessage":"OK","transaction":{"id":"tx-1",'
                b'"invoiceID":"000000042","amount":"1500.50","currency":"KZT",'
                b'"statusName":"CHARGE","reference":"123","approvalCode":"A1",'
                b'"cardMask":"4400****0178","cardID":"c1","reason":"","reasonCode":"0",'
                b'"terminalID":"terminal-uuid"}}',
            ),
        ]
    )
    # When the invoice's status is asked
    result = client(transport).status("000000042", "", deadline())
    # Then the transaction is read with exact amounts and numeric codes
    assert result.transaction is not None
    assert result.transaction.status_name == "CHARGE"
    assert result.transaction.amount == Decimal("1500.50")
    assert result.transaction.reason_code == 0
    # And it was a GET on the invoice's check-status path
    assert transport.requests[1].url.endswith("/check-status/payment/transaction/000000042")
    assert transport.requests[1].method == "GET"


def test_terminal_token_is_reused_until_it_expires() -> None:
    # Given a cached terminal token
    status_ok = FakeResponse(200, b'{"resultCode":"102","resultMessage":""}')
    transport = FakeTransport([TOKEN_OK, status_ok, status_ok])
    epay = client(transport)
    # When two status calls are made / Then one token serves both
    epay.status("000000001", "", deadline())
    epay.status("000000002", "", deadline())
    assert len(transport.requests) == 3


def test_capture_posts_to_the_transaction_and_maps_a_refusal() -> None:
    # Given ePay accepting a first capture and refusing a second
    transport = FakeTransport(
        [TOKEN_OK, FakeResponse(200, b""), FakeResponse(400, b'{"code":100,"message":""}')]
    )
    epay = client(transport)
    # When the whole amount is captured / Then it posts to the transaction with the Bearer token
    epay.capture("tx-1", "", None, deadline())
    assert transport.requests[1].url == "https://api.test/operation/tx-1/charge"
    assert transport.requests[1].headers["Authorization"] == "Bearer tok-1"
    # When a part is captured and ePay refuses / Then it is a rejection, and the amount was sent
    with pytest.raises(GatewayRejectedError):
        epay.capture("tx-1", "", Decimal("10.00"), deadline())
    assert json.loads(transport.requests[2].body or b"") == {"amount": 10.0}


def test_no_call_is_made_without_time_left() -> None:
    # Given less time left than a call needs / When a card is charged
    transport = FakeTransport([])
    # Then ePay counts as unavailable and nothing is sent
    with pytest.raises(GatewayUnavailableError):
        client(transport).authorize(
            Token("t", FAR_FUTURE),
            auth_request(),
            Deadline.after(0.3),
        )
    assert transport.requests == []


def test_read_timeout_is_capped_by_the_deadline() -> None:
    # Given 4 s left of the invocation (less than the 7 s read timeout)
    transport = FakeTransport([TOKEN_OK])
    # When a token is requested
    client(transport).invoice_token(
        InvoiceTokenRequest("000000042", Decimal(1), "KZT", "https://a", "https://b", "h"),
        Deadline.after(4.0),
    )
    # Then the read timeout fits in the time left, with a margin
    assert transport.requests[0].timeout.read_timeout <= 3.5
