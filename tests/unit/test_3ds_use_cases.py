"""3-D Secure without sockets: page tokens, the confirm mapping, the HTML, and the use cases on
in-memory fakes (single use, expiry, MD check, one confirm per return, concurrent double submit)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
from urllib3.exceptions import ReadTimeoutError

from payments.charges.links import PublicLinks
from payments.charges.model import Charge, ChargeStatus, ThreeDSData
from payments.charges.page_tokens import PageTokens, derive_key, token_digest
from payments.charges.payment_gateway import ConfirmResult, StatusResult, TransactionStatus
from payments.charges.threeds import (
    AutoSubmit,
    Finish,
    MdMismatchError,
    PageLinks,
    ThreeDSService,
    with_query,
)
from payments.charges.use_cases import ChargeUseCases
from payments.charges.views import charge_resource
from payments.epay.client import EpayClient, EpayCredentials
from payments.epay.responses import interpret_confirm
from payments.errors import (
    GatewayRejectedError,
    GatewayUnknownOutcomeError,
    NotFoundError,
    ValidationError,
)
from payments.http.pages import SCRIPT_HASH, auto_submit_page, parse_form
from payments.shared.deadline import Deadline
from payments.shared.payer import Payer
from tests.fakes import (
    FakeGateway,
    FakeResponse,
    FakeStore,
    FakeTransport,
    RecordingTelemetry,
    fake_allocator,
    make_charge,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = derive_key("client-secret")
TOKENS = PageTokens(lambda: KEY, new_nonce=lambda: "nonce-1")

# ------------------------------------------------------------------------------- page tokens


def test_page_token_is_256_bits_bound_to_the_charge_and_kept_as_a_digest() -> None:
    # Given a page token issued for charge ch_11111111111111111111111111111111
    nonce, digest = TOKENS.issue("ch_11111111111111111111111111111111")
    token = TOKENS.token("ch_11111111111111111111111111111111", nonce)
    # Then it is 43 URL-safe characters (256 bits) and only its SHA-256 digest is kept
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert digest == hashlib.sha256(token.encode()).hexdigest() == token_digest(token)
    # And it opens only its own charge's page: not another charge's, not one altered character,
    # and nothing when either the token or the stored digest is missing
    assert PageTokens.matches(token, digest)
    assert not PageTokens.matches(TOKENS.token("ch_2", nonce), digest)
    assert not PageTokens.matches(token[:-1] + ("A" if token[-1] != "A" else "B"), digest)
    assert not PageTokens.matches(None, digest)
    assert not PageTokens.matches(token, None)
    # And another key (another client secret) gives another token
    other = PageTokens(lambda: derive_key("other-secret"))
    assert other.token("ch_11111111111111111111111111111111", nonce) != token


# ------------------------------------------------------------------------------- confirm


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("https://shop/ok?reference=633412345678", ConfirmResult("633412345678", None)),
        ("https://shop/fail?errorCode=455", ConfirmResult(None, "455")),
        ("/3ds/result?ErrorCode=455&x=1", ConfirmResult(None, "455")),
        ("https://shop/ok", ConfirmResult(None, None)),
    ],
)
def test_confirm_redirect_is_read_without_following_it(
    location: str, expected: ConfirmResult
) -> None:
    # Given ePay answering the confirm with a redirect / Then its reference or error code is read
    assert interpret_confirm(302, location, b"") == expected


def test_confirm_json_body_is_read_as_approved_or_not() -> None:
    # Given ePay answering the confirm with JSON: an AUTH with a reference, then a 3DS failure
    ok = interpret_confirm(200, None, b'{"status":"AUTH","code":0,"reference":"1234"}')
    bad = interpret_confirm(200, None, b'{"code":455,"message":"3DS failed"}')
    # Then the first is approved (a reference, no error code), the second is not (ePay's code)
    assert ok == ConfirmResult("1234", None)
    assert bad == ConfirmResult(None, "455")


def test_confirm_errors_are_a_refusal_or_an_unknown_outcome() -> None:
    # Given a 4xx refusal of the PaRes / Then ePay rejected the confirm
    with pytest.raises(GatewayRejectedError):
        interpret_confirm(400, None, b'{"code":1,"message":"invalid PaRes"}')
    # Given a 5xx, a redirect without a Location, or a read timeout / Then the outcome is unknown
    with pytest.raises(GatewayUnknownOutcomeError):
        interpret_confirm(503, None, b"")
    with pytest.raises(GatewayUnknownOutcomeError):
        interpret_confirm(302, None, b"")
    with pytest.raises(GatewayUnknownOutcomeError):
        interpret_confirm(None, None, b"", ReadTimeoutError(None, "/", "timed out"))  # type: ignore[arg-type]


def test_confirm_posts_a_form_with_the_access_token_once_and_never_follows() -> None:
    # Given ePay answering a first confirm with a redirect and timing out on a second
    transport = FakeTransport(
        [
            FakeResponse(302, b"", {"Location": "https://shop/ok?reference=1"}),
            ReadTimeoutError(None, "/", "timed out"),  # type: ignore[arg-type]
        ]
    )
    client = EpayClient(
        oauth_url="https://oauth.test/token",
        api_url="https://api.test",
        credentials=lambda: EpayCredentials.single("id", "secret", "terminal"),
        scope="payment",
        http=transport,  # type: ignore[arg-type]
        confirm_path="/payments/cards/confirmPayment",
    )
    # When the customer's PaRes and MD are confirmed / Then the redirect's reference is read
    assert client.confirm_3ds("tok/+1", "pa res", "md-1", Deadline.after(20)).reference == "1"
    # And it was one form POST with the access token in the query, not as a Bearer header
    (request,) = transport.requests
    assert request.method == "POST"
    assert request.url == "https://api.test/payments/cards/confirmPayment?Access=tok%2F%2B1"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in request.headers
    assert parse_qs((request.body or b"").decode()) == {"PaRes": ["pa res"], "MD": ["md-1"]}
    # When the next confirm times out / Then the ambiguous answer is raised and never retried
    with pytest.raises(GatewayUnknownOutcomeError):
        client.confirm_3ds("tok", "p", "m", Deadline.after(20))
    assert len(transport.requests) == 2


# ------------------------------------------------------------------------------- HTML


def test_page_escapes_every_value_and_allows_only_its_own_script() -> None:
    # Given an ACS address, PaReq and MD that each carry a script injection
    evil = "\"'><script>alert(1)</script>"
    # When the auto-submit page is rendered
    page = auto_submit_page(
        AutoSubmit(
            charge_id="ch_11111111111111111111111111111111",
            action="https://acs.example/a?x=" + evil,
            action_origin="https://acs.example",
            pa_req=evil,
            md=evil,
            term_url="https://pay.example/charges/ch_11111111111111111111111111111111/3ds/return",
            language="eng",
        ),
        "https://pay.example",
    )
    # Then only the page's own script is there, and every injected value is escaped
    assert page.body.count("<script>") == 1
    assert "<script>alert" not in page.body
    assert page.body.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3
    assert "&#x27;" in page.body
    assert "&quot;" in page.body
    # And the CSP runs only that script and posts the form only to the ACS and to us; never cached
    csp = page.headers["Content-Security-Policy"]
    assert f"script-src {SCRIPT_HASH}" in csp
    assert "form-action https://acs.example https://pay.example" in csp
    assert page.headers["Cache-Control"] == "no-store"
    # And the page speaks the charge's language
    assert '<html lang="en">' in page.body


def test_form_parsing_accepts_base64_and_refuses_garbage() -> None:
    # Given the ACS's return post as a plain form, base64 encoded by API Gateway, or absent
    # Then each is read into its fields
    assert parse_form("PaRes=a%2Bb&MD=1", False) == {"PaRes": "a+b", "MD": "1"}
    assert parse_form("UGFSZXM9YSUyQmImTUQ9MQ==", True) == {"PaRes": "a+b", "MD": "1"}
    assert parse_form(None, False) == {}
    # Given a body that is not base64, or is too large / Then it is refused
    with pytest.raises(ValidationError):
        parse_form("not base64!", True)
    with pytest.raises(ValidationError):
        parse_form("a=" + "x" * 70_000, False)


def test_with_query_keeps_the_merchants_parameters() -> None:
    # Given the merchant's back link with its own query and fragment
    # When our outcome is added to it
    url = with_query(
        "https://shop/ok?order=42&status=old#top",
        chargeId="ch_11111111111111111111111111111111",
        status="CAPTURED",
    )
    # Then the merchant's parameters and fragment stay, and our status replaces a stale one
    assert (
        url
        == "https://shop/ok?order=42&chargeId=ch_11111111111111111111111111111111&status=CAPTURED#top"
    )


# ------------------------------------------------------------------------------- use cases


@dataclass
class Fake3DSGateway(FakeGateway):
    """FakeGateway plus a scripted status API and confirm endpoint."""

    status_name: str = "3D"
    confirm_outcome: ConfirmResult | Exception = field(default_factory=ConfirmResult)
    on_confirm: threading.Event | None = None
    release_confirm: threading.Event | None = None

    def status(self, invoice_id: str, terminal_id: str, deadline: Deadline) -> StatusResult:
        self.calls.append(("status", invoice_id))
        tx = TransactionStatus(
            "tx-1", invoice_id, self.status_name, Decimal("100.00"), "KZT", "rrn", None, None,
            "3DS failed" if self.status_name == "REJECT" else None,
            455 if self.status_name == "REJECT" else None,
        )  # fmt: skip
        return StatusResult("100", "", tx)

    def confirm_3ds(
        self, access_token: str, pa_res: str, md: str, deadline: Deadline
    ) -> ConfirmResult:
        self.calls.append(("confirm", (access_token, pa_res, md)))
        if self.on_confirm is not None:
            self.on_confirm.set()
        if self.release_confirm is not None:
            self.release_confirm.wait(5)
        if isinstance(self.confirm_outcome, Exception):
            raise self.confirm_outcome
        return self.confirm_outcome


def three_ds_charge(store: FakeStore, **three_ds: object) -> Charge:
    nonce, digest = TOKENS.issue("ch_11111111111111111111111111111111")
    data = ThreeDSData(
        pa_req="pareq",
        md="md-1",
        action="https://acs.example/acs",
        access_token="epay-token",
        token_expires_at=NOW + timedelta(minutes=20),
        page_nonce=nonce,
        page_token_digest=digest,
    )
    charge = make_charge(
        id="ch_11111111111111111111111111111111",
        invoice_id="000000001",
        status=ChargeStatus.REQUIRES_3DS,
        amount=Decimal("100.00"),
        card_id="c0000000-0000-4000-8000-000000000003",
        description="Order",
        created_at=NOW,
        updated_at=NOW,
        payer=Payer(back_link="https://shop/ok", failure_back_link="https://shop/fail"),
        three_ds=replace(data, **three_ds),  # type: ignore[arg-type]
    )
    store.charges[charge.id] = charge
    store.history[charge.id] = []
    return charge


def service(
    gateway: Fake3DSGateway,
    store: FakeStore,
    *,
    now: datetime = NOW,
    allow_loopback: bool = False,
    sleep: Callable[[float], None] = lambda _s: None,
) -> ThreeDSService:
    telemetry = RecordingTelemetry()
    links = PublicLinks("https://pay.example/v1")
    charges = ChargeUseCases.build(
        store=store,
        gateway=gateway,
        telemetry=telemetry,
        links=links,
        allocator=fake_allocator(),
        clock=lambda: now,
    )
    return ThreeDSService(
        store=store,
        gateway=gateway,
        settler=charges.settler,
        transitions=charges.transitions,
        telemetry=telemetry,
        links=PageLinks(TOKENS, links),
        allow_loopback_acs=allow_loopback,
        clock=lambda: now,
        sleep=sleep,
    )


def token() -> str:
    return TOKENS.token("ch_11111111111111111111111111111111", "nonce-1")


def deadline() -> Deadline:
    return Deadline.after(20)


def test_resource_shows_the_redirect_url_recomputed_from_the_nonce() -> None:
    # Given a charge waiting for 3DS with a page nonce stored
    store = FakeStore()
    charge = three_ds_charge(store)
    links = PageLinks(TOKENS, PublicLinks("https://pay.example/v1"))
    # When the charge is shown / Then its next action is a redirect to our 3DS page with the token
    resource = charge_resource(charge, links.page_url(charge))
    assert resource["nextAction"] == {
        "type": "redirect",
        "url": f"https://pay.example/v1/charges/ch_11111111111111111111111111111111/3ds?token={token()}",
    }
    # Given an older charge without a page token / Then the bare 3DS marker stays
    legacy = replace(charge, three_ds=replace(charge.three_ds, page_nonce=None))  # type: ignore[type-var]
    assert charge_resource(legacy, links.page_url(legacy))["nextAction"] == {
        "type": "three_d_secure"
    }


def test_page_is_served_once() -> None:
    # Given a charge waiting for 3DS
    store, gateway = FakeStore(), Fake3DSGateway()
    three_ds_charge(store)
    svc = service(gateway, store)
    # When the customer opens the 3DS page with its token
    form = svc.open_page("ch_11111111111111111111111111111111", token(), deadline())
    # Then the form posts to the ACS and comes back to our return URL
    assert isinstance(form, AutoSubmit)
    assert (
        form.term_url
        == "https://pay.example/v1/charges/ch_11111111111111111111111111111111/3ds/return"
    )
    assert form.action_origin == "https://acs.example"
    # And the same token does not open it a second time, and ePay was not asked anything
    with pytest.raises(NotFoundError):
        svc.open_page("ch_11111111111111111111111111111111", token(), deadline())
    assert gateway.calls == []


@pytest.mark.parametrize(
    ("action", "loopback", "ok"),
    [
        ("https://acs.example:8443/acs", False, True),
        ("http://127.0.0.1:8081/acs", True, True),
        ("http://127.0.0.1:8081/acs", False, False),
        ("http://acs.example/acs", True, False),
        ("https://acs.example/a b", False, False),
        ("ftp://acs.example/", False, False),
    ],
)
def test_acs_address_rules(action: str, loopback: bool, ok: bool) -> None:
    # Given ePay named this ACS address (loopback allowed only when the stack says so)
    store, gateway = FakeStore(), Fake3DSGateway()
    three_ds_charge(store, action=action)
    # When the customer opens the 3DS page
    answer = service(gateway, store, allow_loopback=loopback).open_page(
        "ch_11111111111111111111111111111111", token(), deadline()
    )
    # Then a safe address gets the form; an unsafe one declines the charge and sends them back
    assert isinstance(answer, AutoSubmit) is ok
    if not ok:
        assert isinstance(answer, Finish)
        assert answer.charge.status is ChargeStatus.DECLINED
        assert (
            answer.redirect
            == "https://shop/fail?chargeId=ch_11111111111111111111111111111111&status=DECLINED"
        )


def test_expired_page_asks_the_status_api_then_expires_the_charge() -> None:
    # Given ePay still shows the invoice as 3D, and the access token expired a minute ago
    store, gateway = FakeStore(), Fake3DSGateway(status_name="3D")
    three_ds_charge(store)
    later = NOW + timedelta(minutes=21)
    # When the customer opens the 3DS page
    answer = service(gateway, store, now=later).open_page(
        "ch_11111111111111111111111111111111", token(), deadline()
    )
    # Then the status API was asked once and the charge is EXPIRED
    assert isinstance(answer, Finish)
    assert answer.charge.status is ChargeStatus.EXPIRED
    assert gateway.ops() == ["status"]
    assert [e.to_status for e in store.history["ch_11111111111111111111111111111111"]] == [
        ChargeStatus.EXPIRED
    ]


def test_return_checks_md_then_confirms_once_and_settles_by_status() -> None:
    # Given a charge waiting for 3DS that ePay will show as CHARGE
    store, gateway = FakeStore(), Fake3DSGateway(status_name="CHARGE")
    three_ds_charge(store)
    svc = service(gateway, store)
    # When the ACS returns with another charge's MD / Then it is refused before ePay or the store
    with pytest.raises(MdMismatchError):
        svc.complete("ch_11111111111111111111111111111111", "pares", "md-2", deadline())
    assert gateway.calls == []
    assert store.writes == 0
    # When it returns with the right MD
    finish = svc.complete("ch_11111111111111111111111111111111", "pares", "md-1", deadline())
    # Then the PaRes is confirmed with ePay's access token, the status API settles it CAPTURED,
    # and the customer goes to the merchant's success link
    assert gateway.ops() == ["confirm", "status"]
    assert gateway.calls[0] == ("confirm", ("epay-token", "pares", "md-1"))
    assert finish.charge.status is ChargeStatus.CAPTURED
    assert (
        finish.redirect
        == "https://shop/ok?chargeId=ch_11111111111111111111111111111111&status=CAPTURED"
    )
    # When the same return is posted again / Then the same answer comes without calling ePay
    again = svc.complete("ch_11111111111111111111111111111111", "pares", "md-1", deadline())
    assert again.redirect == finish.redirect
    assert gateway.ops() == ["confirm", "status"]


def test_concurrent_double_submit_calls_confirm_once_and_both_see_the_outcome() -> None:
    # Given a first return post whose confirm is held at ePay (which will REJECT it)
    store = FakeStore()
    gateway = Fake3DSGateway(
        status_name="REJECT", on_confirm=threading.Event(), release_confirm=threading.Event()
    )
    three_ds_charge(store)
    naps: list[float] = []

    def nap(seconds: float) -> None:
        # The second request is waiting: now let the first one's confirm answer.
        naps.append(seconds)
        assert gateway.release_confirm is not None
        gateway.release_confirm.set()
        time.sleep(0.01)

    svc = service(gateway, store, sleep=nap)
    results: list[Finish] = []
    worker = threading.Thread(
        target=lambda: results.append(
            svc.complete("ch_11111111111111111111111111111111", "pares", "md-1", deadline())
        )
    )
    worker.start()
    assert gateway.on_confirm is not None
    assert gateway.on_confirm.wait(5)
    # When the same post arrives while the first is still at ePay
    second = svc.complete("ch_11111111111111111111111111111111", "pares", "md-1", deadline())
    worker.join(5)
    # Then it waited for the first, ePay was called once, and both answers agree
    assert naps
    assert gateway.ops().count("confirm") == 1
    assert second.charge.status is ChargeStatus.DECLINED
    assert (
        second.redirect
        == results[0].redirect
        == ("https://shop/fail?chargeId=ch_11111111111111111111111111111111&status=DECLINED")
    )


def test_confirm_failure_still_asks_the_status_api() -> None:
    # Given the confirm times out at ePay, although ePay authorised the payment
    store = FakeStore()
    gateway = Fake3DSGateway(
        status_name="AUTH",
        confirm_outcome=GatewayUnknownOutcomeError("timeout", operation="confirm"),
    )
    three_ds_charge(store)
    # When the ACS's return is completed
    finish = service(gateway, store).complete(
        "ch_11111111111111111111111111111111", "pares", "md-1", deadline()
    )
    # Then the status API decides: AUTH, so the charge is captured
    assert gateway.ops() == ["confirm", "status", "capture"]
    assert finish.charge.status is ChargeStatus.CAPTURED
