"""Injected faults: what is committed, what is answered, and how faults are counted."""

from __future__ import annotations

import json
import time

import pytest
import urllib3

from local.epay_sim import CARD_AUTH, EpaySimulator
from tests.simulator.epay_client import (
    auth_body,
    invoice_token,
    new_invoice,
    pay,
    post_auth,
    request_token,
    status,
)


def test_timeout_after_commit_commits_once(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the next auth will commit and then never answer
    sim.inject("auth", "timeout_after_commit", delay=3.0)
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When the client sends it with a short read timeout
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        post_auth(
            http,
            sim,
            token,
            auth_body(invoice, CARD_AUTH),
            timeout=urllib3.Timeout(connect=1.0, read=0.5),
        )
    # Then the auth exists at ePay exactly once, and the status API tells so
    entry = sim.ledger[invoice]
    assert entry.auth_count == 1
    assert entry.status_name == "AUTH"
    assert status(http, sim, invoice)["transaction"]["statusName"] == "AUTH"
    (journaled,) = sim.requests("auth")
    assert journaled.status == 0
    assert journaled.fault == "timeout_after_commit"


def test_500_before_commit_commits_nothing(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the next auth fails before committing
    sim.inject("auth", "500_before_commit")
    # When it is sent
    invoice, resp = pay(http, sim, CARD_AUTH)
    # Then 500 comes back and there is no transaction
    assert resp.status == 500
    assert resp.json() == {"message": "Internal error"}
    assert status(http, sim, invoice)["resultCode"] == "102"


def test_500_after_commit_and_broken_body_commit(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the next two auths commit and then answer badly
    sim.inject("auth", "500_after_commit")
    sim.inject("auth", "broken_body")
    # When they are sent
    first, failed = pay(http, sim, CARD_AUTH)
    second, broken = pay(http, sim, CARD_AUTH)
    # Then the answers are a 500 and an unparsable 200, but both transactions exist
    assert failed.status == 500
    assert broken.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.data)
    assert sim.ledger[first].status_name == "AUTH"
    assert sim.ledger[second].status_name == "AUTH"


def test_down_closes_without_answer_and_commits_nothing(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the gateway drops the next auth connection
    sim.inject("auth", "down")
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When the auth is sent
    with pytest.raises(urllib3.exceptions.ProtocolError):
        post_auth(http, sim, token, auth_body(invoice, CARD_AUTH))
    # Then nothing was committed and the next request is served normally
    assert sim.ledger == {}
    assert status(http, sim, invoice)["resultCode"] == "102"


def test_slow_fault_and_count(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the next two status requests are slow
    sim.inject("status", "slow", count=2, delay=0.3)
    # When three are sent
    started = time.monotonic()
    for _ in range(2):
        status(http, sim, "123456")
    slow_elapsed = time.monotonic() - started
    started = time.monotonic()
    status(http, sim, "123456")
    fast_elapsed = time.monotonic() - started
    # Then only the first two waited
    assert slow_elapsed >= 0.6
    assert fast_elapsed < 0.3
    assert sim.faults() == []


def test_token_fault(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given the token endpoint fails once
    sim.inject("token", "500_before_commit")
    # When two tokens are requested
    first = request_token(http, sim)
    second = request_token(http, sim)
    # Then the first is a 500 and the second works
    assert first.status == 500
    assert second.status == 200


def test_inject_rejects_unknown_names(sim: EpaySimulator) -> None:
    # Given / When / Then an unknown op or fault is refused
    with pytest.raises(ValueError, match="op"):
        sim.inject("nope", "down")
    with pytest.raises(ValueError, match="fault"):
        sim.inject("auth", "nope")


def test_in_progress_fault_asks_the_client_to_ask_later(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given an authorised invoice and one status query armed to be "in progress"
    invoice, _ = pay(http, sim, CARD_AUTH)
    sim.inject("status", "in_progress")
    # When the status is asked twice
    first = status(http, sim, invoice)
    second = status(http, sim, invoice)
    # Then the first is resultCode 107 without a transaction, the second finds the AUTH
    assert first == {"resultCode": "107", "resultMessage": "In progress"}
    assert second["transaction"]["statusName"] == "AUTH"
    assert [entry.fault for entry in sim.requests("status")] == ["in_progress", None]
