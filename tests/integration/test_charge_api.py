"""POST/GET /charges and capture, in-process handler against DynamoDB Local and the simulator."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from local.epay_sim import TEST_CLIENT_SECRET, TEST_TERMINAL_ID
from payments.charges.model import charge_id_for_key
from tests.integration.conftest import (
    Stack,
    capture_event,
    create_event,
    get_event,
)

APPROVE = "c0000000-0000-4000-8000-000000000001"
SINGLE_STAGE = "c0000000-0000-4000-8000-000000000002"
THREE_DS = "c0000000-0000-4000-8000-000000000003"
BODY: dict[str, Any] = {
    "amount": 1500.5,
    "currency": "KZT",
    "cardId": APPROVE,
    "accountId": "customer-42",
    "description": "Order 42",
}


def body(**changes: Any) -> dict[str, Any]:
    return {**BODY, **changes}


def test_approved_card_is_charged_and_captured(stack: Stack) -> None:
    # Given the simulator's approving card / When the merchant creates a charge
    answer = stack.invoke(create_event(body(), "order-1"))
    # Then it answers 201 with the captured charge resource
    assert answer.status == 201
    charge = answer.body
    assert charge["status"] == "CAPTURED"
    assert charge["amount"] == 1500.5
    assert '"amount":1500.50' in answer.raw
    assert charge["cardId"] == "****0001"
    assert charge["epay"]["transactionId"]
    assert charge["epay"]["reference"]
    assert charge["nextAction"] is None
    assert charge["error"] is None
    assert answer.headers["location"] == f"/charges/{charge['id']}"
    # And ePay saw token, auth and capture, and holds a CHARGE for that invoice
    assert [e.op for e in stack.simulator.journal] == ["token", "auth", "token", "charge"]
    ledger = stack.simulator.ledger[charge["invoiceId"]]
    assert ledger.status_name == "CHARGE"
    assert ledger.auth_count == 1
    # And the store holds the charge (on the one terminal; its id derives from the key, so the
    # key has no item of its own), its invoice, the suffix on its terminal (its three history
    # entries inside the charge item), the ring that dealt the id and the terminal's lane
    assert charge["id"] == charge_id_for_key("order-1")
    (item,) = stack.charge_items()
    assert item["status"]["S"] == "CAPTURED"
    assert [h["M"]["to"]["S"] for h in item["history"]["L"]] == [
        "PROCESSING",
        "AUTHORIZED",
        "CAPTURED",
    ]
    assert item["terminalId"]["S"] == TEST_TERMINAL_ID
    kinds = sorted(i["sk"]["S"].split("#")[0] for i in stack.items())
    assert kinds == [
        "CHARGE",
        "INVOICE",
        "INVOICE_LANE",
        "INVOICE_LANE",
        "INVOICE_SUFFIX",
        "RING",
    ]
    suffix = next(i for i in stack.items() if i["sk"]["S"] == "INVOICE_SUFFIX")
    assert suffix["pk"]["S"] == f"INVOICE_SUFFIX#{TEST_TERMINAL_ID}#{charge['invoiceId'][-6:]}"


def test_wire_format_of_token_and_auth(stack: Stack) -> None:
    # When a charge is created with every optional field
    answer = stack.invoke(
        create_event(
            body(
                name="IVAN PETROV",
                email="ivan@example.kz",
                phone="77001234567",
                language="eng",
                invoiceIdAlt="5550001",
                backLink="https://shop.example.kz/ok",
                failureBackLink="https://shop.example.kz/fail",
                recurrent=False,
            ),
            "order-wire",
        )
    )
    invoice = answer.body["invoiceId"]
    token, auth = stack.simulator.journal[0], stack.simulator.journal[1]
    # Then the token form has exactly epay-api.md section 1's fields
    assert token.form is not None
    assert set(token.form) == {
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "terminal",
        "invoiceID",
        "amount",
        "currency",
        "postLink",
        "failurePostLink",
        "secret_hash",
    }
    assert token.form["invoiceID"] == invoice
    assert token.form["amount"] == "1500.50"
    assert token.form["terminal"] == TEST_TERMINAL_ID
    assert token.form["postLink"] == "http://127.0.0.1:3000/epay/postlink"
    assert len(token.form["secret_hash"]) >= 32
    # And the auth is JSON with a Bearer token, cardId as an object, paymentType cardId
    assert auth.headers["authorization"].startswith("Bearer ")
    assert auth.headers["content-type"] == "application/json"
    assert json.loads(auth.raw_body, parse_float=Decimal) == {
        "amount": Decimal("1500.50"),
        "currency": "KZT",
        "terminalId": TEST_TERMINAL_ID,
        "invoiceId": invoice,
        "invoiceIdAlt": "5550001",
        "description": "Order 42",
        "accountId": "customer-42",
        "name": "IVAN PETROV",
        "email": "ivan@example.kz",
        "phone": "77001234567",
        "language": "eng",
        "backLink": "https://shop.example.kz/ok",
        "failureBackLink": "https://shop.example.kz/fail",
        "postLink": "http://127.0.0.1:3000/epay/postlink",
        "failurePostLink": "http://127.0.0.1:3000/epay/postlink/failure",
        "paymentType": "cardId",
        "recurrent": False,
        "cardId": {"id": APPROVE},
    }
    # And only the digest of secret_hash is stored (its 32 bytes, a Binary value)
    (item,) = stack.charge_items()
    assert token.form["secret_hash"] not in json.dumps(stack.items(), default=bytes.hex)
    assert len(item["secretHashDigest"]["B"]) == 32


def test_manual_capture_then_partial_capture(stack: Stack) -> None:
    # Given a charge created with capture=manual
    created = stack.invoke(create_event(body(capture="manual"), "order-m")).body
    assert created["status"] == "AUTHORIZED"
    assert stack.simulator.ledger[created["invoiceId"]].status_name == "AUTH"
    # When the merchant captures part of it
    answer = stack.invoke(capture_event(created["id"], {"amount": 1000}))
    # Then it is CAPTURED for that amount, at ePay too
    assert answer.status == 200
    assert answer.body["status"] == "CAPTURED"
    assert answer.body["capturedAmount"] == 1000
    assert stack.simulator.ledger[created["invoiceId"]].captured_amount == Decimal("1000")
    # And capturing more than authorised is refused before ePay
    other = stack.invoke(create_event(body(capture="manual"), "order-m2")).body
    too_much = stack.invoke(capture_event(other["id"], {"amount": 2000}))
    assert too_much.status == 400
    assert too_much.body["error"]["fields"]["amount"]


def test_single_stage_terminal_answer_is_captured_directly(stack: Stack) -> None:
    answer = stack.invoke(create_event(body(cardId=SINGLE_STAGE), "order-s"))
    assert answer.body["status"] == "CAPTURED"
    assert [e.op for e in stack.simulator.journal] == ["token", "auth"]


def test_3ds_answer_requires_action_and_keeps_the_3ds_data(stack: Stack) -> None:
    answer = stack.invoke(create_event(body(cardId=THREE_DS), "order-3d"))
    assert answer.status == 201
    assert answer.body["status"] == "REQUIRES_3DS"
    assert answer.body["nextAction"] is not None
    (item,) = stack.charge_items()
    three_ds = item["threeDS"]["M"]
    assert {"paReq", "md", "action", "accessToken", "tokenExpiresAt"} <= set(three_ds)
    assert "paReq" not in answer.raw
    assert three_ds["paReq"]["S"] not in answer.raw


@pytest.mark.parametrize(
    ("card", "code", "category"),
    [
        ("c0000000-0000-4000-8000-000000000004", "484", "soft"),
        ("c0000000-0000-4000-8000-000000000005", "483", "hard"),
        ("c0000000-0000-4000-8000-000000000006", "478", "hard"),
        ("c0000000-0000-4000-8000-000000000007", "455", "authentication"),
        ("c0000000-0000-4000-8000-000000000008", "477", "other"),
        ("c0000000-0000-4000-8000-000000000009", "493", "soft"),
        ("c0000000-0000-4000-8000-000000000010", "471", "hard"),
    ],
)
def test_declines_are_recorded_with_code_and_category(
    stack: Stack, card: str, code: str, category: str
) -> None:
    answer = stack.invoke(create_event(body(cardId=card), f"order-{code}"))
    assert answer.status == 201
    assert answer.body["status"] == "DECLINED"
    assert answer.body["error"]["code"] == code
    assert answer.body["error"]["category"] == category
    assert answer.body["error"]["message"]
    (item,) = stack.charge_items()
    assert item["status"]["S"] == "DECLINED"


@pytest.mark.parametrize("fault", ["timeout_after_commit", "500_after_commit", "broken_body"])
def test_ambiguous_auth_answer_is_unknown_and_never_resent(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    # Given ePay commits the auth but the answer is lost, broken or an error
    monkeypatch.setenv("EPAY_READ_TIMEOUT", "1")
    stack.simulator.inject("auth", fault, count=1, delay=3.0)
    # When the merchant creates a charge
    answer = stack.invoke(create_event(body(), "order-u"))
    # Then the charge is UNKNOWN, ePay did authorise it once, and nothing re-sent the auth
    assert answer.status == 201
    assert answer.body["status"] == "UNKNOWN"
    assert stack.simulator.ledger[answer.body["invoiceId"]].auth_count == 1
    # And a retry with the same key replays without reaching ePay
    again = stack.invoke(create_event(body(), "order-u"))
    assert again.status == 200
    assert again.body["status"] == "UNKNOWN"
    assert len(stack.auths()) == 1


def test_token_endpoint_down_fails_fast_and_sends_no_auth(stack: Stack) -> None:
    # Given the token endpoint answering 5xx to every try
    stack.simulator.inject("token", "500_before_commit", count=5)
    # When a charge is created
    answer = stack.invoke(create_event(body(), "order-down"))
    # Then a clear 503, the charge FAILED, no auth was sent
    assert answer.status == 503
    assert answer.body["error"]["code"] == "gateway_unavailable"
    assert stack.auths() == []
    (item,) = stack.charge_items()
    assert item["status"]["S"] == "FAILED"


def test_same_key_replays_the_same_body_without_calling_epay(stack: Stack) -> None:
    first = stack.invoke(create_event(body(), "order-r"))
    calls = len(stack.simulator.journal)
    second = stack.invoke(create_event(body(), "order-r"))
    assert second.status == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert second.body == first.body
    assert len(stack.simulator.journal) == calls


def test_same_key_with_another_body_is_422(stack: Stack) -> None:
    stack.invoke(create_event(body(), "order-x"))
    answer = stack.invoke(create_event(body(amount=1500.51), "order-x"))
    assert answer.status == 422
    assert answer.body["error"]["code"] == "idempotency_key_reused"
    assert len(stack.auths()) == 1


def test_twenty_concurrent_requests_with_one_key_make_one_auth(stack: Stack) -> None:
    # Given ePay answering slowly, so requests overlap
    stack.simulator.inject("auth", "slow", count=1, delay=1.0)
    # When 20 identical requests with one key arrive at once
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: stack.invoke(create_event(body(), "same")), range(20)))
    # Then exactly one auth reached ePay and one charge is stored
    assert len(stack.auths()) == 1
    assert len(stack.charge_items()) == 1
    statuses = sorted(a.status for a in answers)
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201, 409}
    ids = {a.body["id"] for a in answers if a.status in {200, 201}}
    assert len(ids) == 1


def test_merchant_invoice_id_is_used_once(stack: Stack) -> None:
    first = stack.invoke(create_event(body(invoiceId="000777001"), "inv-1"))
    assert first.body["invoiceId"] == "000777001"
    second = stack.invoke(create_event(body(invoiceId="000777001"), "inv-2"))
    assert second.status == 409
    # the same last six digits are refused as well
    third = stack.invoke(create_event(body(invoiceId="123777001"), "inv-3"))
    assert third.status == 409
    assert len(stack.auths()) == 1


def test_get_charge_and_404(stack: Stack) -> None:
    created = stack.invoke(create_event(body(), "order-g")).body
    found = stack.invoke(get_event(created["id"]))
    assert found.status == 200
    assert found.body == created
    missing = stack.invoke(get_event("ch_doesnotexist"))
    assert missing.status == 404
    assert missing.body["error"]["code"] == "not_found"


OVERSIZED = json.dumps(body(description="x" * 20000))


@pytest.mark.parametrize(
    ("event_body", "key", "field"),
    [
        ("{not json", "k", None),
        ('{"amount": NaN}', "k", None),
        ('{"amount": 1, "amount": 2}', "k", None),
        ("[]", "k", None),
        ("", "k", None),
        (OVERSIZED, "k", None),
        (json.dumps(body()), None, "Idempotency-Key"),
        (json.dumps(body(amount="1500")), "k", "amount"),
        (json.dumps(body(amount=0)), "k", "amount"),
        (json.dumps(body(amount=10.001)), "k", "amount"),
        (json.dumps(body(currency="ABC")), "k", "currency"),
        (json.dumps(body(description="д" * 63)), "k", "description"),
        (json.dumps(body(language="fr")), "k", "language"),
        (json.dumps(body(invoiceId="12345")), "k", "invoiceId"),
        (json.dumps(body(backLink="http://shop.example.kz")), "k", "backLink"),
        (json.dumps(body(recurrent="true")), "k", "recurrent"),
        (json.dumps(body(extra=1)), "k", "extra"),
        (json.dumps({k: v for k, v in BODY.items() if k != "cardId"}), "k", "cardId"),
    ],
)
def test_invalid_input_is_400_and_changes_nothing(
    stack: Stack, event_body: str, key: str | None, field: str | None
) -> None:
    # When an invalid request arrives
    answer = stack.invoke(create_event(None, key, raw=event_body))
    # Then a 400 says what is wrong, nothing is written and ePay is not called
    assert answer.status == 400
    assert answer.body["error"]["code"] == "validation_error"
    assert answer.body["error"]["message"]
    if field is not None:
        assert field in answer.body["error"]["fields"]
    assert stack.items() == []
    assert stack.simulator.journal == []


def test_logs_never_carry_secrets_tokens_or_card_ids(stack: Stack, captured_logs: Any) -> None:
    # Given every outcome: captured, 3DS, declined, unknown, failed
    stack.invoke(create_event(body(), "log-1"))
    stack.invoke(create_event(body(cardId=THREE_DS), "log-2"))
    stack.invoke(create_event(body(cardId="c0000000-0000-4000-8000-000000000005"), "log-3"))
    stack.simulator.inject("auth", "500_after_commit", count=1)
    stack.invoke(create_event(body(), "log-4"))
    stack.simulator.inject("token", "500_before_commit", count=5)
    stack.invoke(create_event(body(), "log-5"))
    logs = captured_logs.getvalue()
    # Then the logs have the outcomes, each on its charge's one line with its steps and ids
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    outcomes = {line.get("to_status") for line in lines}
    assert {"CAPTURED", "REQUIRES_3DS", "DECLINED", "UNKNOWN", "FAILED"} <= outcomes
    transitioned = [line for line in lines if line["message"] == "charge transitioned"]
    assert len(transitioned) == 5  # one per charge (each invocation moved one charge)
    for line in transitioned:
        assert line["charge_id"].startswith("ch_")
        assert line["steps"].startswith("created>PROCESSING>")
        assert line["steps"].endswith(f">{line['to_status']}")
        assert line["function_request_id"]
    # And none of the secrets ever reached them
    secrets = {TEST_CLIENT_SECRET, APPROVE, THREE_DS}
    for entry in stack.simulator.journal:
        if entry.form and "secret_hash" in entry.form:
            secrets.add(entry.form["secret_hash"])
        if "authorization" in entry.headers:
            secrets.add(entry.headers["authorization"].removeprefix("Bearer "))
    for item in stack.charge_items():
        if "threeDS" in item:
            secrets.add(item["threeDS"]["M"]["paReq"]["S"])
            secrets.add(item["threeDS"]["M"]["md"]["S"])
    assert len(secrets) >= 8
    leaked = [s for s in secrets if s in logs]
    assert leaked == []


def test_thirty_concurrent_captures_make_one_capture_call(stack: Stack) -> None:
    # Given a held (AUTHORIZED) charge and ePay answering the capture slowly, so callers overlap
    created = stack.invoke(create_event(body(capture="manual"), "order-race")).body
    assert created["status"] == "AUTHORIZED"
    stack.simulator.inject("charge", "slow", count=1, delay=1.0)
    # When 30 captures of it arrive at once
    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(lambda _: stack.invoke(capture_event(created["id"])), range(30)))
    # Then ePay's charge endpoint was called exactly once
    assert len(stack.simulator.requests("charge")) == 1
    assert stack.simulator.ledger[created["invoiceId"]].status_name == "CHARGE"
    # And every caller got the documented answer: the captured charge, or 409 while in flight
    assert {a.status for a in answers} <= {200, 409}
    assert any(a.status == 200 for a in answers)
    for answer in answers:
        if answer.status == 200:
            assert answer.body["status"] == "CAPTURED"
        else:
            assert answer.body["error"]["code"] == "capture_in_progress"
    # And the charge holds one capture, with the claim released
    (item,) = [i for i in stack.charge_items() if i["pk"]["S"] == f"CHARGE#{created['id']}"]
    assert item["status"]["S"] == "CAPTURED"
    assert "captureClaimedAt" not in item
