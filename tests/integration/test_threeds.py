"""3-D Secure pages in-process: the charges and 3DS handlers on API Gateway events (events/threeds),
DynamoDB Local, the simulator's ACS and confirm endpoint over loopback."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from payments import bootstrap
from payments.shared.deadline import Deadline
from tests.integration.conftest import (
    Context,
    Stack,
    create_event,
    get_event,
    load_event,
    load_function,
)

THREE_DS = "c0000000-0000-4000-8000-000000000003"
BACK = "https://shop.example.kz/pay/done?order=42"
FAIL = "https://shop.example.kz/pay/failed"
BODY: dict[str, Any] = {
    "amount": 2500,
    "currency": "KZT",
    "cardId": THREE_DS,
    "accountId": "customer-42",
    "description": "Order 42",
    "backLink": BACK,
    "failureBackLink": FAIL,
}
TOKEN_RE = re.compile(
    r"^http://127\.0\.0\.1:3000/charges/(ch_[0-9a-f]{32})/3ds\?token=([\w-]{43})$"
)


@dataclass
class Page:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class ThreeDS:
    stack: Stack
    handler: Callable[[dict[str, Any], Any], dict[str, Any]]

    def call(self, event: dict[str, Any]) -> Page:
        result = self.handler(event, Context())
        headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ",".join(values)
        return Page(result["statusCode"], headers, result.get("body") or "")

    def create(self, key: str, **changes: Any) -> dict[str, Any]:
        answer = self.stack.invoke(create_event({**BODY, **changes}, key))
        assert answer.status == 201, answer.raw
        assert answer.body["status"] == "REQUIRES_3DS"
        result: dict[str, Any] = answer.body
        return result

    def open(self, url: str) -> Page:
        match = TOKEN_RE.match(url)
        assert match, url
        return self.call(page_event(match.group(1), match.group(2)))

    def item(self, charge_id: str) -> dict[str, Any]:
        item = self.stack.dynamodb.get_item(
            TableName=self.stack.table,
            Key={"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}},
            ConsistentRead=True,
        )["Item"]
        result: dict[str, Any] = item
        return result

    def set_three_ds(self, charge_id: str, **values: str) -> None:
        names = {f"#k{i}": k for i, k in enumerate(values)}
        self.stack.dynamodb.update_item(
            TableName=self.stack.table,
            Key={"pk": {"S": f"CHARGE#{charge_id}"}, "sk": {"S": "CHARGE"}},
            UpdateExpression="SET "
            + ", ".join(f"threeDS.#k{i} = :v{i}" for i in range(len(values))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": {"S": v} for i, v in enumerate(values.values())},
        )

    def ops(self) -> list[str]:
        return [e.op for e in self.stack.simulator.journal]


@pytest.fixture
def threeds(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ThreeDS:
    # The simulator's ACS is http on loopback: allowed only where the local stack says so.
    monkeypatch.setenv("ALLOW_LOOPBACK_ACS", "true")
    bootstrap.reset()
    return ThreeDS(stack, load_function("threeds").lambda_handler)


def page_event(charge_id: str, token: str | None) -> dict[str, Any]:
    event = load_event("threeds/open-page.json")
    event["path"] = f"/charges/{charge_id}/3ds"
    event["pathParameters"] = {"chargeId": charge_id}
    event["requestContext"]["path"] = f"/v1/charges/{charge_id}/3ds"
    query = None if token is None else {"token": token}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {"token": [token]} if token is not None else None
    return event


def return_event(charge_id: str, form: dict[str, str], *, b64: bool = False) -> dict[str, Any]:
    event = load_event("threeds/return.json" if not b64 else "threeds/return-base64.json")
    event["path"] = f"/charges/{charge_id}/3ds/return"
    event["pathParameters"] = {"chargeId": charge_id}
    event["requestContext"]["path"] = f"/v1/charges/{charge_id}/3ds/return"
    raw = urllib.parse.urlencode(form)
    event["body"] = base64.b64encode(raw.encode()).decode() if b64 else raw
    return event


def hidden_fields(html: str) -> dict[str, str]:
    import html as html_lib

    return {
        name: html_lib.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html)
    }


def form_action(html: str) -> str:
    import html as html_lib

    match = re.search(r'<form id="threeds-form" method="post" action="([^"]*)">', html)
    assert match, html
    return html_lib.unescape(match.group(1))


def acs_pares(action: str, fields: dict[str, str], button: str) -> str:
    """Post the page's form to the simulator's ACS like a browser; take the chosen PaRes."""
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(action, data=data, timeout=5) as answer:
        html = answer.read().decode()
    match = re.search(rf'<form id="{button}-form".*?name="PaRes" value="([^"]*)"', html)
    assert match, html
    return match.group(1)


def query_of(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def start_3ds(threeds: ThreeDS, key: str, **changes: Any) -> tuple[str, dict[str, str], str]:
    """Create a 3DS charge and open its page: (charge id, the form's fields, the ACS action)."""
    charge = threeds.create(key, **changes)
    page = threeds.open(charge["nextAction"]["url"])
    assert page.status == 200, page.body
    return charge["id"], hidden_fields(page.body), form_action(page.body)


# ------------------------------------------------------------------------------- hand-off


def test_3ds_charge_hands_off_a_tokened_page_url_and_stores_only_its_digest(
    threeds: ThreeDS,
) -> None:
    # When a charge with the simulator's 3DS card is created
    charge = threeds.create("hand-off")
    # Then its next action is a redirect to our page with a 256-bit token
    action = charge["nextAction"]
    assert action["type"] == "redirect"
    match = TOKEN_RE.match(action["url"])
    assert match
    assert match.group(1) == charge["id"]
    token = match.group(2)
    # And the store keeps the digest and a nonce, never the token
    three_ds = threeds.item(charge["id"])["threeDS"]["M"]
    assert three_ds["pageTokenDigest"]["S"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(threeds.stack.items(), default=bytes.hex)
    # And GET and a replay show the same URL (recomputed, not stored)
    got = threeds.stack.invoke(get_event(charge["id"]))
    assert got.body["nextAction"] == action
    replay = threeds.stack.invoke(create_event(BODY, "hand-off"))
    assert replay.status == 200
    assert replay.body["nextAction"] == action


def test_page_tokens_differ_per_charge(threeds: ThreeDS) -> None:
    first = threeds.create("tok-1")["nextAction"]["url"]
    second = threeds.create("tok-2")["nextAction"]["url"]
    assert first.split("token=")[1] != second.split("token=")[1]


# ------------------------------------------------------------------------------- the page


def test_page_auto_posts_pareq_md_and_termurl_to_the_acs_with_strict_headers(
    threeds: ThreeDS,
) -> None:
    charge = threeds.create("page")
    stored = threeds.item(charge["id"])["threeDS"]["M"]
    # When the customer opens nextAction.url
    page = threeds.open(charge["nextAction"]["url"])
    # Then it is an HTML form to ePay's secure3D.action with PaReq, MD and our TermUrl
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert form_action(page.body) == threeds.stack.simulator.acs_url
    assert hidden_fields(page.body) == {
        "PaReq": stored["paReq"]["S"],
        "MD": stored["md"]["S"],
        "TermUrl": f"http://127.0.0.1:3000/charges/{charge['id']}/3ds/return",
    }
    # And it auto-submits with a script allowed only by its hash, with a visible button
    assert 'document.getElementById("threeds-form").submit();' in page.body
    assert '<button type="submit" id="continue">' in page.body
    # And it says "please wait" in Kazakh, Russian and English
    assert 'lang="kk"' in page.body
    assert 'lang="ru"' in page.body
    assert 'lang="en"' in page.body
    # And it is never cached, leaks no referrer, and its CSP allows only what it needs
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = dict(
        [*part.split(" ", 1), ""][:2]
        for part in page.headers["content-security-policy"].split("; ")
    )
    assert csp["default-src"] == "'none'"
    assert csp["script-src"].startswith("'sha256-")
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    acs_origin = threeds.stack.simulator.acs_url.rsplit("/", 1)[0]
    assert csp["form-action"].split() == [acs_origin, "http://127.0.0.1:3000"]
    assert csp["frame-ancestors"] == "'none'"
    # And the page token is used up: the charge remembers the page was served
    assert "pageServedAt" in threeds.item(charge["id"])["threeDS"]["M"]


@pytest.mark.parametrize("token", [None, "", "x" * 43, "short", "A" * 44])
def test_wrong_or_missing_token_is_a_404_that_reveals_nothing(
    threeds: ThreeDS, token: str | None
) -> None:
    charge = threeds.create("wrong-token")
    page = threeds.call(page_event(charge["id"], token))
    assert page.status == 404
    assert charge["id"] not in page.body
    assert "REQUIRES_3DS" not in page.body
    assert "PaReq" not in page.body
    # And nothing changed
    assert "pageServedAt" not in threeds.item(charge["id"])["threeDS"]["M"]


def test_token_of_another_charge_is_a_404(threeds: ThreeDS) -> None:
    first = threeds.create("other-1")
    second = threeds.create("other-2")
    token = first["nextAction"]["url"].split("token=")[1]
    assert threeds.call(page_event(second["id"], token)).status == 404
    assert threeds.call(page_event("ch_doesnotexist", token)).status == 404


def test_used_token_is_a_404(threeds: ThreeDS) -> None:
    charge = threeds.create("used")
    assert threeds.open(charge["nextAction"]["url"]).status == 200
    # When the page is opened again (reload, back button, a leaked URL)
    again = threeds.open(charge["nextAction"]["url"])
    # Then it is the same bare 404
    assert again.status == 404
    assert "PaReq" not in again.body


def test_expired_token_ends_the_charge_expired_and_redirects_to_the_failure_link(
    threeds: ThreeDS,
) -> None:
    charge = threeds.create("expired")
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    threeds.set_three_ds(charge["id"], tokenExpiresAt=past)
    # When the customer opens the page after ePay's token expired
    page = threeds.open(charge["nextAction"]["url"])
    # Then the status API is asked first (it still says 3D), and the charge is EXPIRED
    assert threeds.ops()[-1] == "status"
    assert page.status == 303
    location = page.headers["location"]
    assert location.startswith(FAIL + "?")
    assert query_of(location) == {"chargeId": charge["id"], "status": "EXPIRED"}
    assert threeds.item(charge["id"])["status"]["S"] == "EXPIRED"
    assert "confirm" not in threeds.ops()


def test_escaping_gateway_values_cannot_inject_markup(threeds: ThreeDS) -> None:
    charge = threeds.create("escape")
    evil = "\"'><script>alert(1)</script><x a='"
    acs = threeds.stack.simulator.acs_url + "?q=" + urllib.parse.quote(evil, safe="")
    threeds.set_three_ds(charge["id"], paReq=evil, md=evil + "md", action=acs)
    page = threeds.open(charge["nextAction"]["url"])
    assert page.status == 200
    # Then the only script is our own, and the values come back intact as attribute text
    assert page.body.count("<script>") == 1
    assert "alert(1)</script>" not in page.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body
    fields = hidden_fields(page.body)
    assert fields["PaReq"] == evil
    assert fields["MD"] == evil + "md"
    assert form_action(page.body) == acs


@pytest.mark.parametrize(
    "action",
    [
        "http://acs.issuer.example/acs",
        "javascript:alert(1)",
        "https://user:pw@acs.issuer.example/acs",
        "https://acs.example;script-src *",
        "data:text/html,<script>alert(1)</script>",
    ],
)
def test_acs_address_that_is_not_https_fails_the_charge_safe(threeds: ThreeDS, action: str) -> None:
    charge = threeds.create("bad-action-" + hashlib.sha256(action.encode()).hexdigest()[:8])
    threeds.set_three_ds(charge["id"], action=action)
    page = threeds.open(charge["nextAction"]["url"])
    # Then no form is served; the charge is DECLINED (3DS unavailable) and the customer goes back
    assert page.status == 303
    assert query_of(page.headers["location"])["status"] == "DECLINED"
    item = threeds.item(charge["id"])
    assert item["status"]["S"] == "DECLINED"
    assert item["error"]["M"]["code"]["S"] == "3ds_unavailable"


def test_loopback_acs_is_refused_unless_the_local_stack_allows_it(
    threeds: ThreeDS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOW_LOOPBACK_ACS", "false")
    bootstrap.reset()
    charge = threeds.create("no-loopback")
    page = threeds.open(charge["nextAction"]["url"])
    assert page.status == 303
    assert threeds.item(charge["id"])["status"]["S"] == "DECLINED"


# ------------------------------------------------------------------------------- TermUrl


def test_approved_3ds_confirms_once_settles_by_status_and_redirects_to_back_link(
    threeds: ThreeDS, captured_logs: Any
) -> None:
    charge_id, fields, action = start_3ds(threeds, "approve")
    pa_res = acs_pares(action, fields, "approve")
    stored_token = threeds.item(charge_id)["threeDS"]["M"]["accessToken"]["S"]
    # When the ACS posts PaRes/MD to TermUrl
    answer = threeds.call(return_event(charge_id, {"PaRes": pa_res, "MD": fields["MD"]}))
    # Then ePay's confirm got PaRes/MD as a form with the charge's token, then the status API
    confirms = [e for e in threeds.stack.simulator.journal if e.op == "confirm"]
    assert len(confirms) == 1
    assert confirms[0].form == {"PaRes": pa_res, "MD": fields["MD"]}
    assert confirms[0].query["Access"] == stored_token
    after = threeds.ops()[threeds.ops().index("confirm") :]
    assert [op for op in after if op != "token"] == ["confirm", "status", "charge"]
    # And the charge is CAPTURED (auto capture), the customer is sent to backLink
    assert answer.status == 303
    location = answer.headers["location"]
    assert location.startswith("https://shop.example.kz/pay/done?")
    assert query_of(location) == {"order": "42", "chargeId": charge_id, "status": "CAPTURED"}
    assert answer.headers["cache-control"] == "no-store"
    got = threeds.stack.invoke(get_event(charge_id))
    assert got.body["status"] == "CAPTURED"
    assert got.body["nextAction"] is None
    assert threeds.stack.simulator.ledger[got.body["invoiceId"]].status_name == "CHARGE"
    # And history says the 3DS return settled it
    history = threeds.item(charge_id)["history"]["L"]
    assert {"3ds-return"} <= {entry["M"]["source"]["S"] for entry in history}
    # And no secret of the step reached the logs
    logs = captured_logs.getvalue()
    for secret in (pa_res, fields["MD"], fields["PaReq"], stored_token):
        assert secret not in logs
    # And the settled charge keeps no PaReq, MD, ePay token or page nonce (only MD's digest)
    kept = threeds.item(charge_id)["threeDS"]["M"]
    assert {"paReq", "accessToken", "pageNonce"}.isdisjoint(kept)
    assert kept["mdIsDigest"]["BOOL"] is True
    item_text = json.dumps(threeds.item(charge_id), default=bytes.hex)
    for secret in (fields["MD"], fields["PaReq"], stored_token):
        assert secret not in item_text
    # And a late copy of the ACS's post is still recognised by its MD, and calls nothing
    calls = len(threeds.stack.simulator.journal)
    late = threeds.call(return_event(charge_id, {"PaRes": pa_res, "MD": fields["MD"]}))
    assert late.status == 303
    assert len(threeds.stack.simulator.journal) == calls


def test_double_submit_does_not_call_epay_again_and_shows_the_same_outcome(
    threeds: ThreeDS,
) -> None:
    charge_id, fields, action = start_3ds(threeds, "double")
    form = {"PaRes": acs_pares(action, fields, "approve"), "MD": fields["MD"]}
    first = threeds.call(return_event(charge_id, form))
    calls = len(threeds.stack.simulator.journal)
    # When the same post arrives again (double click, back button)
    second = threeds.call(return_event(charge_id, form))
    # Then ePay is not called again, and the answer is the same
    assert len(threeds.stack.simulator.journal) == calls
    assert (second.status, second.headers["location"]) == (first.status, first.headers["location"])


def test_failed_3ds_is_declined_and_redirects_to_failure_back_link(threeds: ThreeDS) -> None:
    charge_id, fields, action = start_3ds(threeds, "fail")
    form = {"PaRes": acs_pares(action, fields, "fail"), "MD": fields["MD"]}
    answer = threeds.call(return_event(charge_id, form))
    assert answer.status == 303
    assert answer.headers["location"].startswith(FAIL + "?")
    assert query_of(answer.headers["location"]) == {"chargeId": charge_id, "status": "DECLINED"}
    got = threeds.stack.invoke(get_event(charge_id)).body
    assert got["status"] == "DECLINED"
    assert got["error"]["code"] == "455"
    assert got["error"]["category"] == "authentication"


def test_base64_body_from_api_gateway_is_accepted(threeds: ThreeDS) -> None:
    charge_id, fields, action = start_3ds(threeds, "b64")
    form = {"PaRes": acs_pares(action, fields, "approve"), "MD": fields["MD"]}
    answer = threeds.call(return_event(charge_id, form, b64=True))
    assert answer.status == 303
    assert query_of(answer.headers["location"])["status"] == "CAPTURED"


def test_md_mismatch_is_a_400_and_changes_nothing(threeds: ThreeDS) -> None:
    charge_id, fields, action = start_3ds(threeds, "md")
    pa_res = acs_pares(action, fields, "approve")
    before = threeds.item(charge_id)
    calls = len(threeds.stack.simulator.journal)
    answer = threeds.call(return_event(charge_id, {"PaRes": pa_res, "MD": fields["MD"] + "0"}))
    assert answer.status == 400
    assert charge_id not in answer.body
    assert threeds.item(charge_id) == before
    assert len(threeds.stack.simulator.journal) == calls


@pytest.mark.parametrize("form", [{}, {"MD": "x"}, {"PaRes": "x"}])
def test_return_without_pares_or_md_is_a_400(threeds: ThreeDS, form: dict[str, str]) -> None:
    charge_id, _fields, _action = start_3ds(threeds, "missing-" + "-".join(form))
    assert threeds.call(return_event(charge_id, form)).status == 400


def test_return_for_an_unknown_charge_is_a_404(threeds: ThreeDS) -> None:
    answer = threeds.call(return_event("ch_" + "0" * 32, {"PaRes": "x", "MD": "y"}))
    assert answer.status == 404


def test_charge_settled_first_by_the_reconciler_is_respected(threeds: ThreeDS) -> None:
    charge_id, fields, action = start_3ds(threeds, "first")
    # Given ePay learned the failure first and the reconciler settled the charge from it
    fail = acs_pares(action, fields, "fail")
    approve = acs_pares(action, fields, "approve")  # the customer's click, whose post is late
    token = threeds.item(charge_id)["threeDS"]["M"]["accessToken"]["S"]
    confirm = f"{threeds.stack.simulator.api_url}/payments/cards/confirmPayment?Access={token}"
    request = urllib.request.Request(
        confirm, data=urllib.parse.urlencode({"PaRes": fail, "MD": fields["MD"]}).encode()
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    with pytest.raises(urllib.error.HTTPError) as redirected:
        urllib.request.build_opener(NoRedirect).open(request, timeout=5)
    assert redirected.value.code == 302
    settled = bootstrap.settler().settle(charge_id, "reconciler", Deadline.after(10))
    assert settled.charge.status.value == "DECLINED"
    calls = len(threeds.stack.simulator.journal)
    # When the customer's (approving) return arrives afterwards
    answer = threeds.call(return_event(charge_id, {"PaRes": approve, "MD": fields["MD"]}))
    # Then ePay is not called, the charge stays DECLINED and the customer sees that
    assert all(e.op != "confirm" for e in threeds.stack.simulator.journal[calls:])
    assert query_of(answer.headers["location"])["status"] == "DECLINED"
    assert threeds.item(charge_id)["status"]["S"] == "DECLINED"


def test_charge_without_links_gets_a_plain_result_page(threeds: ThreeDS) -> None:
    charge = threeds.create("no-links", backLink=None, failureBackLink=None)
    page = threeds.open(charge["nextAction"]["url"])
    fields, action = hidden_fields(page.body), form_action(page.body)
    form = {"PaRes": acs_pares(action, fields, "approve"), "MD": fields["MD"]}
    answer = threeds.call(return_event(charge["id"], form))
    assert answer.status == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert '<span id="status">CAPTURED</span>' in answer.body
    assert "Оплата прошла успешно." in answer.body
    assert "script-src 'none'" in answer.headers["content-security-policy"]


def test_confirm_endpoint_down_still_settles_from_the_status_api(threeds: ThreeDS) -> None:
    charge_id, fields, action = start_3ds(threeds, "confirm-down")
    form = {"PaRes": acs_pares(action, fields, "approve"), "MD": fields["MD"]}
    # Given ePay's confirm answers 500 without doing anything
    threeds.stack.simulator.inject("confirm", "500_before_commit")
    answer = threeds.call(return_event(charge_id, form))
    # Then the status API (still 3D) leaves the charge REQUIRES_3DS, the customer sees pending
    assert answer.status == 303
    assert query_of(answer.headers["location"])["status"] == "REQUIRES_3DS"
    assert answer.headers["location"].startswith("https://shop.example.kz/pay/done?")
    item = threeds.item(charge_id)
    assert item["status"]["S"] == "REQUIRES_3DS"
    # And the reconciler is due soon (not only after the token's expiry)
    due = datetime.fromisoformat(item["nextCheckAt"]["S"].replace("Z", "+00:00"))
    assert due <= datetime.now(UTC) + timedelta(minutes=2)
    # And a second post does not call confirm again
    calls = len(threeds.stack.simulator.journal)
    threeds.call(return_event(charge_id, form))
    assert all(e.op != "confirm" for e in threeds.stack.simulator.journal[calls:])
