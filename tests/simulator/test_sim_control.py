"""Control endpoints (``/_sim/*``), settings, routing, the loopback rule and running standalone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local.epay_sim import CARD_AUTH, ERR_REQUEST, TEST_CLIENT_SECRET, EpaySimulator
from tests.simulator.epay_client import (
    auth_body,
    invoice_token,
    new_invoice,
    pay,
    post_auth,
    request_token,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_control_endpoints(http: urllib3.PoolManager, sim: EpaySimulator) -> None:
    # Given a fault armed over HTTP
    armed = http.request(
        "POST",
        f"{sim.base_url}/_sim/faults",
        body=json.dumps({"op": "auth", "fault": "500_after_commit", "count": 1}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert armed.status == 200
    # When an auth is sent
    invoice, resp = pay(http, sim, CARD_AUTH)
    # Then the fault applied and journal and ledger are readable as JSON
    assert resp.status == 500
    ledger = http.request("GET", f"{sim.base_url}/_sim/ledger").json()
    assert ledger[invoice]["status_name"] == "AUTH"
    assert ledger[invoice]["amount"] == "100"
    journal = http.request("GET", f"{sim.base_url}/_sim/journal").json()
    assert [entry["op"] for entry in journal] == ["token", "auth"]
    assert journal[0]["form"]["invoiceID"] == invoice
    # And reset clears everything
    assert http.request("POST", f"{sim.base_url}/_sim/reset").status == 200
    assert sim.ledger == {}
    assert sim.journal == []


def test_clock_control_endpoint_expires_tokens(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given a token with the default lifetime
    invoice = new_invoice()
    token = invoice_token(http, sim, invoice)
    # When an out-of-process test moves the simulator's time past it
    moved = http.request(
        "POST",
        f"{sim.base_url}/_sim/clock",
        body=b'{"advance": 1200}',
        headers={"Content-Type": "application/json"},
    )
    # Then the token no longer works
    assert moved.status == 200
    assert post_auth(http, sim, token, auth_body(invoice, CARD_AUTH)).status == 401


def test_only_loopback_hosts_are_allowed() -> None:
    # Given / When / Then a non-loopback bind address is refused
    with pytest.raises(ValueError, match="loopback"):
        EpaySimulator(host="0.0.0.0")


def test_standalone_module_prints_its_urls() -> None:
    # Given the simulator started as a module on a free port
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.epay_sim", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        # When its first line is read
        match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert match, line
        # Then it serves the control endpoints
        pool = urllib3.PoolManager(retries=False, timeout=2.0)
        assert pool.request("GET", f"{match.group(1)}/_sim/ledger").json() == {}
    finally:
        proc.terminate()
        proc.wait(timeout=5)
    assert proc.returncode == 0


def test_config_endpoint_changes_the_settings_every_area_reads() -> None:
    # Given a two-stage simulator of its own (settings outlive reset)
    with EpaySimulator() as other:
        pool = urllib3.PoolManager(retries=False, timeout=5.0)

        def configure(changes: dict[str, Any]) -> urllib3.BaseHTTPResponse:
            return pool.request(
                "POST",
                f"{other.base_url}/_sim/config",
                body=json.dumps(changes).encode(),
                headers={"Content-Type": "application/json"},
            )

        # When settings are changed over HTTP, then a bad value and an unknown key are sent
        changed = configure({"single_stage": True, "expires_in": 60})
        bad_value = configure({"three_ds_final_status": "VOID"})
        unknown = configure({"client_secret": "guessed"})
        # Then the attributes and the answers follow the change, and the rest is a 400
        assert changed.status == 200
        assert (other.single_stage, other.expires_in) == (True, 60)
        assert other.three_ds_final_status == "CHARGE"
        assert request_token(pool, other).json()["expires_in"] == 60
        _, resp = pay(pool, other, CARD_AUTH)
        assert resp.json()["status"] == "CHARGE"
        assert bad_value.status == 400
        assert unknown.status == 400
        assert other.client_secret == TEST_CLIENT_SECRET


def test_settings_set_as_attributes_apply_at_once() -> None:
    # Given a two-stage simulator of its own
    with EpaySimulator() as other:
        pool = urllib3.PoolManager(retries=False, timeout=5.0)
        assert other.three_ds_final_status == "AUTH"
        # When it is made single-stage through its attribute
        other.single_stage = True
        # Then the AUTH card is charged at once and a 3DS step would end as CHARGE
        _, resp = pay(pool, other, CARD_AUTH)
        assert resp.json()["status"] == "CHARGE"
        assert other.three_ds_final_status == "CHARGE"
        # And an invalid final 3DS status is refused
        with pytest.raises(ValueError, match="three_ds_final_status"):
            other.three_ds_final_status = "VOID"


@pytest.mark.parametrize(
    "settings", [{"three_ds_final_status": "VOID"}, {"confirm_response": "html"}]
)
def test_invalid_settings_are_refused_at_construction(settings: dict[str, Any]) -> None:
    # Given / When / Then a simulator cannot be built with an unknown behaviour
    with pytest.raises(ValueError, match=next(iter(settings))):
        EpaySimulator(**settings)


def test_unknown_path_is_404_and_wrong_method_405(
    http: urllib3.PoolManager, sim: EpaySimulator
) -> None:
    # Given the simulator
    # When an unknown path is asked, and the auth endpoint with GET
    missing = http.request("GET", f"{sim.api_url}/payments/unknown")
    wrong_method = http.request("GET", f"{sim.api_url}/payments/cards/auth")
    # Then they are 404 and 405, both journaled, and nothing is committed
    assert missing.status == 404
    assert wrong_method.status == 405
    assert wrong_method.json()["code"] == ERR_REQUEST
    assert [(entry.op, entry.status) for entry in sim.journal] == [("other", 404), ("auth", 405)]
    assert sim.ledger == {}
