"""local.run: the whole local stack in-process (start_stack) and as `python -m local.run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import urllib3
from conftest import FIXTURE_TEMPLATE

from local.run import (
    _widget_url,
    card_setup_curl_example,
    curl_example,
    list_cards_curl_example,
    start_stack,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GATEWAY_ENV = {
    "EPAY_OAUTH_URL": "http://127.0.0.1:9/oauth",
    "EPAY_API_URL": "http://127.0.0.1:9/api",
}


def _has_simulator() -> bool:
    try:
        from local.epay_sim import EpaySimulator  # noqa: F401
    except ImportError:
        return False
    return True


def test_start_stack_serves_the_template_over_moto(http: urllib3.PoolManager) -> None:
    # Given an ePay gateway given by the environment (so no simulator) and moto for AWS
    before = dict(os.environ)

    # When the stack starts on a free port
    with start_stack(
        0, template_path=FIXTURE_TEMPLATE, environ=GATEWAY_ENV, dynamodb="moto"
    ) as stack:
        # Then the API answers over HTTP with the function's environment in place
        response = http.request("GET", f"{stack.url}/items/42")
        assert response.status == 200
        env = json.loads(response.data)["env"]
        assert env["TABLE_NAME"] == stack.resource_names["EchoTable"] == "local-EchoTable"
        assert env["GREETING"] == "hello"  # the parameter's default
        # And the functions are pointed at moto, the given gateway and the local API
        assert stack.simulator is None
        assert stack.env["EPAY_OAUTH_URL"] == GATEWAY_ENV["EPAY_OAUTH_URL"]
        assert stack.env["EPAY_API_URL"] == GATEWAY_ENV["EPAY_API_URL"]
        assert stack.env["PUBLIC_BASE_URL"] == stack.url
        assert stack.env["PAYMENTS_TABLE"] == "local-EchoTable"
        assert stack.env["AWS_ENDPOINT_URL"] == stack.aws_endpoint
        assert stack.env["AWS_DEFAULT_REGION"] == "us-east-1"
        # And without a simulator nothing overrides the widget's URL (the template's default)
        assert "EPAY_WIDGET_URL" not in stack.env
        # And the resources exist at that endpoint, as any boto3 client in a handler sees them
        dynamodb = boto3.client("dynamodb")  # from the environment the stack set
        assert "local-EchoTable" in dynamodb.list_tables()["TableNames"]

    # And stopping restores the process environment
    assert dict(os.environ) == before


def test_start_stack_uses_a_given_aws_endpoint(http: urllib3.PoolManager) -> None:
    # Given a first stack whose moto server stands in for "some AWS endpoint"
    with start_stack(
        0, template_path=FIXTURE_TEMPLATE, environ=GATEWAY_ENV, dynamodb="moto"
    ) as first:
        environ = {
            **GATEWAY_ENV,
            "AWS_ENDPOINT_URL": first.aws_endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        # When a second stack is started with AWS_ENDPOINT_URL set
        with start_stack(0, template_path=FIXTURE_TEMPLATE, environ=environ) as second:
            # Then it starts no emulator of its own and reuses the existing resources
            assert second.aws_endpoint == first.aws_endpoint
            assert second.dynamodb_endpoint == first.aws_endpoint
            assert second.resource_names == first.resource_names
            assert http.request("GET", f"{second.url}/other").status == 200


def test_curl_example_charges_the_approved_test_card() -> None:
    command = curl_example("http://127.0.0.1:3000")
    assert command.startswith("curl -s -X POST http://127.0.0.1:3000/charges ")
    assert "Idempotency-Key: $(python3 -c 'import uuid; print(uuid.uuid4())')" in command
    payload = json.loads(command.split("-d '", 1)[1].rstrip("'"))
    assert payload["cardId"] == "c0000000-0000-4000-8000-000000000001"
    assert payload["currency"] == "KZT"


def test_card_examples_create_a_setup_and_list_the_cards() -> None:
    # Given the banner's card examples
    create = card_setup_curl_example("http://127.0.0.1:3000")
    listing = list_cards_curl_example("http://127.0.0.1:3000")
    # Then the first posts a verifying card setup with an idempotency key, as JSON
    assert create.startswith("curl -s -X POST http://127.0.0.1:3000/card-setups ")
    assert "Idempotency-Key: $(python3 -c 'import uuid; print(uuid.uuid4())')" in create
    payload = json.loads(create.split("-d '", 1)[1].rstrip("'"))
    assert payload == {
        "accountId": "acc-1",
        "mode": "verify",
        "backLink": "https://merchant.example/cards/done",
    }
    # And the second lists that account's cards
    assert listing == "curl -s http://127.0.0.1:3000/accounts/acc-1/cards"


class _FakeSimulator:
    base_url = "http://127.0.0.1:4321"


class _FakeSimulatorWithWidget(_FakeSimulator):
    widget_url = "http://127.0.0.1:4321/payform/payment-api.js?v=2"


def test_widget_url_points_at_the_simulator_unless_given() -> None:
    # With the simulator: its widget script (its own property, else the path on its host)
    assert _widget_url(_FakeSimulatorWithWidget(), {}, {}) == _FakeSimulatorWithWidget.widget_url
    assert _widget_url(_FakeSimulator(), {}, {}) == "http://127.0.0.1:4321/payform/payment-api.js"
    # With a real gateway: the environment's EPAY_WIDGET_URL, else the template's (empty)
    given = {"EPAY_WIDGET_URL": "https://test-epay.epayment.kz/payform/payment-api.js"}
    assert _widget_url(None, given, {}) == given["EPAY_WIDGET_URL"]
    assert _widget_url(None, {}, {}) == ""
    # And the EpayWidgetUrl parameter always wins (the template resolves it)
    parameter = {"EpayWidgetUrl": "https://widget.example/payment-api.js"}
    assert _widget_url(_FakeSimulator(), given, parameter) == ""


def test_main_runs_until_sigterm() -> None:
    # Given `python -m local.run` on the fixture template and a free port
    env = {**os.environ, **GATEWAY_ENV}
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        env.pop(name, None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.run",
            "--port",
            "0",
            "--template",
            str(FIXTURE_TEMPLATE),
            "--dynamodb",
            "moto",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # When it reports it is up
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "Local stack is up" in output, output + (
            process.stderr.read() if process.stderr else ""
        )
        url = next(line.split()[1] for line in lines if line.strip().startswith("API"))
        # Then its API answers
        response = urllib3.request("GET", f"{url}/other", timeout=5, retries=False)
        assert response.status == 200
        assert "curl -s -X POST" in output
        assert "/card-setups" in output
        assert "/accounts/acc-1/cards" in output
        # And SIGTERM stops it cleanly
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.skipif(not _has_simulator(), reason="local.epay_sim.EpaySimulator not available yet")
def test_start_stack_starts_the_simulator_by_default(http: urllib3.PoolManager) -> None:
    # Given no ePay URLs in the environment
    with start_stack(0, template_path=FIXTURE_TEMPLATE, environ={}, dynamodb="moto") as stack:
        # Then the simulator runs and the functions are pointed at it
        assert stack.simulator is not None
        assert stack.env["EPAY_OAUTH_URL"] == stack.simulator.oauth_url
        assert stack.env["EPAY_API_URL"] == stack.simulator.api_url
        # And the card setup page loads the simulator's widget script, served by the simulator
        widget = stack.env["EPAY_WIDGET_URL"]
        assert widget.startswith(f"{stack.simulator.base_url}/payform/payment-api.js")
        assert widget == getattr(stack.simulator, "widget_url", widget)


@pytest.mark.skipif(not _has_simulator(), reason="local.epay_sim.EpaySimulator not available yet")
def test_the_repository_stack_routes_a_charge_to_its_handler(http: urllib3.PoolManager) -> None:
    # Given the project's own template.yaml, functions and the simulator (what `make run` starts)
    with start_stack(0, environ={}, dynamodb="moto") as stack:
        # When the documented curl's request is sent
        response = http.request(
            "POST",
            f"{stack.url}/charges",
            body=json.dumps(
                {
                    "amount": 1500.00,
                    "currency": "KZT",
                    "cardId": "c0000000-0000-4000-8000-000000000001",
                    "accountId": "customer-42",
                    "description": "Order 42",
                }
            ),
            headers={"Content-Type": "application/json", "Idempotency-Key": "smoke-local-run-1"},
        )
    # Then the route exists and the charge handler answered without a server error
    assert response.status != 403, response.data
    assert response.status < 500, response.data


def _has_card_functions() -> bool:
    return all(
        (REPO_ROOT / "functions" / name / "app.py").is_file() for name in ("cards", "card_pages")
    )


@pytest.mark.skipif(not _has_simulator(), reason="local.epay_sim.EpaySimulator not available yet")
@pytest.mark.skipif(not _has_card_functions(), reason="functions/cards and card_pages not written")
def test_the_repository_stack_serves_a_card_setup_and_its_page(http: urllib3.PoolManager) -> None:
    # Given what `make run` starts
    with start_stack(0, environ={}, dynamodb="moto") as stack:
        # When the banner's card setup request is sent
        payload = json.loads(card_setup_curl_example(stack.url).split("-d '", 1)[1].rstrip("'"))
        created = http.request(
            "POST",
            f"{stack.url}/card-setups",
            body=json.dumps(payload),
            headers={"Content-Type": "application/json", "Idempotency-Key": "smoke-card-setup-1"},
        )
        # Then a setup is created with the URL of its page on the local API
        assert created.status in (200, 201), created.data
        url = json.loads(created.data)["url"]
        assert url.startswith(f"{stack.url}/card-setups/"), url
        # And the page (public) is HTML that loads the simulator's widget script
        page = http.request("GET", url)
        assert page.status == 200, page.data
        assert page.headers["Content-Type"].startswith("text/html")
        assert stack.env["EPAY_WIDGET_URL"] in page.data.decode()
        # And the banner's listing answers for the account
        listing = http.request("GET", f"{stack.url}/accounts/{payload['accountId']}/cards")
        assert listing.status == 200, listing.data


@pytest.mark.skipif(not _has_simulator(), reason="local.epay_sim.EpaySimulator not available yet")
def test_with_handler_processes_a_charge_settles_and_its_events_flow(
    http: urllib3.PoolManager,
) -> None:
    # Given the repository's stack as `make run` starts it: handlers in two worker processes
    with start_stack(0, environ={}, dynamodb="moto", processes=2) as stack:
        assert stack.gateway.pool is not None
        pids = stack.gateway.pool.pids
        assert len(pids) == 2
        # When the banner's charge is sent
        payload = json.loads(curl_example(stack.url).split("-d '", 1)[1].rstrip("'"))
        response = http.request(
            "POST",
            f"{stack.url}/charges",
            body=json.dumps(payload),
            headers={"Content-Type": "application/json", "Idempotency-Key": "pooled-charge-1"},
        )
        # Then it is captured, its postLink is delivered to the (pooled) postLink function
        assert response.status == 201, response.data
        charge = json.loads(response.data)
        assert charge["status"] == "CAPTURED"
        simulator = stack.require_simulator()
        delivered = simulator.wait_for_postlinks(1, timeout=10)
        assert delivered
        assert delivered[0].status == 200
        # And the stream poller's charge events function (run in a worker too) published them
        deadline = time.monotonic() + 15
        types: list[str] = []
        while time.monotonic() < deadline:
            events = http.request("GET", f"{stack.url}/_local/events")
            types = [str(e.get("type", "")) for e in json.loads(events.data)["data"]]
            if any(t.startswith("charge.") for t in types):
                break
            time.sleep(0.2)
        assert any(t.startswith("charge.") for t in types), types
    # And stopping the stack leaves no worker process behind
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(_running(pid) for pid in pids)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
