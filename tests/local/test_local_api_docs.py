"""The local-only API document and reference page (local.apigw.docs) over real HTTP, and what
`make run` prints about them and about the simulator's faults."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3
import yaml
from conftest import FIXTURE_ENV, FIXTURE_TEMPLATE

from local.apigw.docs import STATIC_FILES, ApiDocs, swagger_ui_static_dir
from local.apigw.server import LocalApiGateway
from local.run import banner, fault_curl_example

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = REPO_ROOT / "openapi.yaml"


@pytest.fixture(scope="module")
def documented() -> Iterator[LocalApiGateway]:
    """The fixture template served with the repository's API document."""
    api = LocalApiGateway(FIXTURE_TEMPLATE, FIXTURE_ENV, port=0, docs=ApiDocs(DOCUMENT))
    api.start()
    try:
        yield api
    finally:
        api.stop()


def test_openapi_json_is_the_document_led_by_the_local_server(
    documented: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # When the document is fetched
    response = http.request("GET", f"{documented.url}/openapi.json")

    # Then it is openapi.yaml as JSON, never cached
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    served: dict[str, Any] = json.loads(response.data)
    expected = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert {k: v for k, v in served.items() if k != "servers"} == {
        k: v for k, v in expected.items() if k != "servers"
    }
    # And its first server is this running API ("Try it out" and imported collections call it),
    # followed by the document's own servers
    assert served["servers"][0]["url"] == documented.url
    assert [s["url"] for s in served["servers"][1:]] == [
        s["url"] for s in expected["servers"] if s["url"] != documented.url
    ]


@pytest.mark.skipif(swagger_ui_static_dir() is None, reason="swagger-ui-py is not installed")
def test_docs_page_renders_the_document_from_bundled_files(
    documented: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # When the reference page is opened
    page = http.request("GET", f"{documented.url}/docs")

    # Then it is HTML, strict about where scripts come from (this server only, no inline script)
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    html = page.data.decode()
    assert "<script>" not in html  # every script is a file

    # And every script, style and icon it loads is served from this server: nothing external
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served locally"
        loaded = http.request("GET", f"{documented.url}{asset}")
        assert loaded.status == 200, asset
        assert loaded.data
    # And the start-up script points Swagger UI at the document
    init = http.request("GET", f"{documented.url}/docs/init.js")
    assert init.headers["Content-Type"].startswith("text/javascript")
    assert b'url: "/openapi.json"' in init.data
    bundle = http.request("GET", f"{documented.url}/docs/static/swagger-ui-bundle.js")
    assert bundle.headers["Content-Type"].startswith("text/javascript")
    # Swagger UI 5 or later reads OpenAPI 3.1
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.', bundle.data)
    assert version is not None
    assert int(version.group(1)) >= 5


def test_only_the_renderers_files_are_served(
    documented: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given names outside the renderer's few files (another file, a path escape)
    for name in ("swagger-editor-bundle.js", "..%2F..%2Fcore.py", "LICENSE"):
        # When fetched / Then they are not found
        response = http.request("GET", f"{documented.url}/docs/static/{name}")
        assert response.status == 404, name
    assert "swagger-ui-bundle.js" in STATIC_FILES


def test_docs_are_local_and_leave_the_templates_routes_alone(
    documented: LocalApiGateway, gateway: LocalApiGateway, http: urllib3.PoolManager
) -> None:
    # Given the same template with and without docs
    # Then its routes answer as before, and other methods on the docs paths are not docs
    assert http.request("GET", f"{documented.url}/items/42").status == 200
    assert http.request("POST", f"{documented.url}/openapi.json").status == 403
    # And a gateway without docs has no /openapi.json or /docs (API Gateway's 403)
    assert http.request("GET", f"{gateway.url}/openapi.json").status == 403
    assert http.request("GET", f"{gateway.url}/docs").status == 403


def test_the_template_does_not_route_the_docs() -> None:
    # The documentation is a local convenience: never part of the deployed API
    text = (REPO_ROOT / "template.yaml").read_text(encoding="utf-8")
    assert "openapi.json" not in text
    assert "/docs" not in text


def _stack(docs: ApiDocs | None, simulator: Any | None) -> Any:
    return SimpleNamespace(
        url="http://127.0.0.1:3000",
        epay_oauth_url="http://127.0.0.1:8081/oauth2/token",
        epay_api_url="http://127.0.0.1:8081",
        env={"PAYMENTS_TABLE": "local-PaymentsTable"},
        aws_endpoint="http://127.0.0.1:5000",
        dynamodb_endpoint="http://127.0.0.1:8000",
        gateway=SimpleNamespace(docs=docs),
        simulator=simulator,
    )


def test_the_banner_tells_where_the_docs_and_the_fault_controls_are() -> None:
    # Given a stack with docs and the simulator
    simulator = SimpleNamespace(base_url="http://127.0.0.1:8081")

    # When its banner is printed
    text = banner(_stack(ApiDocs(DOCUMENT), simulator))

    # Then it names the reference page, the document to import and the fault endpoint
    assert "http://127.0.0.1:3000/docs" in text
    assert "http://127.0.0.1:3000/openapi.json" in text
    assert "Postman" in text
    assert "Insomnia" in text
    # (at the API's own address: the local API passes /_sim/ to the simulator)
    assert "POST http://127.0.0.1:3000/_sim/faults" in text
    assert fault_curl_example("http://127.0.0.1:3000") in text
    # And no line is wider than a terminal's 100 columns but the ready-to-paste curls
    assert all(len(line) <= 100 or "curl" in line for line in text.splitlines())


def test_the_banner_leaves_out_what_the_stack_does_not_have() -> None:
    # Given a stack on a real gateway (no simulator) without a document
    text = banner(_stack(None, None))
    # Then neither the docs nor the fault controls are mentioned
    assert "/docs" not in text
    assert "_sim/faults" not in text


def test_the_fault_example_is_a_body_the_simulator_takes() -> None:
    # Given the banner's curl
    command = fault_curl_example("http://127.0.0.1:8081")
    body = json.loads(command.split("-d '", 1)[1].rstrip("'"))

    # Then its body is what POST /_sim/faults reads (local.epay_sim.control), with a real op/fault
    from local.epay_sim.models import FAULTS, OPS

    assert set(body) == {"op", "fault", "count", "delay"}
    assert body["op"] in OPS
    assert body["fault"] in FAULTS


def test_the_fault_example_arms_a_fault_on_the_simulator(http: urllib3.PoolManager) -> None:
    from local.epay_sim import EpaySimulator

    # Given a running simulator and the banner's example body
    simulator = EpaySimulator(host="127.0.0.1", port=0).start()
    try:
        command = fault_curl_example(str(simulator.base_url))
        body = command.split("-d '", 1)[1].rstrip("'")
        url = command.split("-X POST ", 1)[1].split(" ", 1)[0]

        # When it is posted
        armed = http.request(
            "POST", url, body=body.encode(), headers={"Content-Type": "application/json"}
        )

        # Then the fault is armed
        assert armed.status == 200, armed.data
        listed = json.loads(http.request("GET", url).data)
        assert [(f["op"], f["fault"]) for f in listed] == [("auth", "timeout_after_commit")]
    finally:
        simulator.stop()
