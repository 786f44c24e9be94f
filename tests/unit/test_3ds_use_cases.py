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
    make_charge,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = derive_key("client-secret")
TOKENS = PageTokens(lambda: KEY, new_nonce=lambda: "nonce-1")

# ------------------------------------------------------------------------------- page tokens


def test_page_token_is_256_bits_bound_to_the_charge_and_kept_as_a_digest() -> None:
    nonce, digest = TOKENS.issue("ch_1")
    token = TOKENS.token("ch_1", nonce)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert digest == hashlib.sha256(token.encode()).hexdigest() == token_digest(token)
    assert PageTokens.matches(token, digest)
    assert not PageTokens.matches(TOKENS.token("ch_2", nonce), digest)
    assert not PageTokens.matches(token[:-1] + ("A" if token[-1] != "A" else "B"), digest)
    assert not PageTokens.matches(None, digest)
    assert not PageTokens.matches(token, None)
    # another key (another secret) gives another token
    other = PageTokens(lambda: derive_key("other-secret"))
    assert other.token("ch_1", nonce) != token


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
    assert interpret_confirm(302, location, b"") == expected


def test_confirm_json_body_and_errors() -> None:
    ok = interpret_confirm(200, None, b'{"status":"AUTH","code":0,"reference":"1234"}')
    assert ok == ConfirmResult("1234", None)
    assert ok.approved is True
    bad = interpret_confirm(200, None, b'{"code":455,"message":"3DS failed"}')
    assert bad.approved is False
    with pytest.raises(GatewayRejectedError):
        interpret_confirm(400, None, b'{"code":1,"message":"invalid PaRes"}')
    with pytest.raises(GatewayUnknownOutcomeError):
        interpret_confirm(503, None, b"")
    with pytest.raises(GatewayUnknownOutcomeError):
        interpret_confirm(302, None, b"")
    with pytest.raises(GatewayUnknownOutcomeError):
        interpret_confirm(None, None, b"", ReadTimeoutError(None, "/", "timed out"))  # type: ignore[arg-type]


def test_confirm_posts_a_form_with_the_access_token_once_and_never_follows() -> None:
    transport = FakeTransport(
        [
            FakeResponse(302, b"", {"Location": "https://shop/ok?reference=1"}),
            ReadTimeoutError(None, "/", "timed out"),  # type: ignore[arg-type]
        ]
    )
    client = EpayClient(
        oauth_url="https://oauth.test/token",
        api_url="https://api.test",
        credentials=lambda: EpayCredentials("id", "secret", "terminal"),
        scope="payment",
        http=transport,  # type: ignore[arg-type]
        confirm_path="/payments/cards/confirmPayment",
    )
    assert client.confirm_3ds("tok/+1", "pa res", "md-1", Deadline.after(20)).reference == "1"
    (request,) = transport.requests
    assert request.method == "POST"
    assert request.url == "https://api.test/payments/cards/confirmPayment?Access=tok%2F%2B1"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in request.headers
    assert parse_qs((request.body or b"").decode()) == {"PaRes": ["pa res"], "MD": ["md-1"]}
    # An ambiguous answer is never retried
    with pytest.raises(GatewayUnknownOutcomeError):
        client.confirm_3ds("tok", "p", "m", Deadline.after(20))
    assert len(transport.requests) == 2


# ------------------------------------------------------------------------------- HTML


def test_page_escapes_every_value_and_allows_only_its_own_script() -> None:
    evil = "\"'><script>alert(1)</script>"
    page = auto_submit_page(
        AutoSubmit(
            charge_id="ch_1",
            action="https://acs.example/a?x=" + evil,
            action_origin="https://acs.example",
            pa_req=evil,
            md=evil,
            term_url="https://pay.example/charges/ch_1/3ds/return",
            language="eng",
        ),
        "https://pay.example",
    )
    assert page.body.count("<script>") == 1
    assert "<script>alert" not in page.body
    assert page.body.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 3
    assert "&#x27;" in page.body
    assert "&quot;" in page.body
    csp = page.headers["Content-Security-Policy"]
    assert f"script-src {SCRIPT_HASH}" in csp
    assert "form-action https://acs.example https://pay.example" in csp
    assert page.headers["Cache-Control"] == "no-store"
    assert '<html lang="en">' in page.body


def test_form_parsing_accepts_base64_and_refuses_garbage() -> None:
    assert parse_form("PaRes=a%2Bb&MD=1", False) == {"PaRes": "a+b", "MD": "1"}
    assert parse_form("UGFSZXM9YSUyQmImTUQ9MQ==", True) == {"PaRes": "a+b", "MD": "1"}
    assert parse_form(None, False) == {}
    with pytest.raises(ValidationError):
        parse_form("not base64!", True)
    with pytest.raises(ValidationError):
        parse_form("a=" + "x" * 70_000, False)


def test_with_query_keeps_the_merchants_parameters() -> None:
    url = with_query("https://shop/ok?order=42&status=old#top", chargeId="ch_1", status="CAPTURED")
    assert url == "https://shop/ok?order=42&chargeId=ch_1&status=CAPTURED#top"


# ------------------------------------------------------------------------------- use cases


@dataclass
class Fake3DSGateway(FakeGateway):
    """FakeGateway plus a scripted status API and confirm endpoint."""

    status_name: str = "3D"
    confirm_outcome: ConfirmResult | Exception = field(default_factory=ConfirmResult)
    on_confirm: threading.Event | None = None
    release_confirm: threading.Event | None = None

    def status(self, invoice_id: str, deadline: Deadline) -> StatusResult:
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
    nonce, digest = TOKENS.issue("ch_1")
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
        store=store, gateway=gateway, telemetry=telemetry, links=links, clock=lambda: now
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
    return TOKENS.token("ch_1", "nonce-1")


def deadline() -> Deadline:
    return Deadline.after(20)


def test_resource_shows_the_redirect_url_recomputed_from_the_nonce() -> None:
    store = FakeStore()
    charge = three_ds_charge(store)
    links = PageLinks(TOKENS, PublicLinks("https://pay.example/v1"))
    resource = charge_resource(charge, links.page_url(charge))
    assert resource["nextAction"] == {
        "type": "redirect",
        "url": f"https://pay.example/v1/charges/ch_1/3ds?token={token()}",
    }
    # Without a page token (an older charge) the bare marker stays
    legacy = replace(charge, three_ds=replace(charge.three_ds, page_nonce=None))  # type: ignore[type-var]
    assert charge_resource(legacy, links.page_url(legacy))["nextAction"] == {
        "type": "three_d_secure"
    }


def test_page_is_served_once() -> None:
    store, gateway = FakeStore(), Fake3DSGateway()
    three_ds_charge(store)
    svc = service(gateway, store)
    form = svc.open_page("ch_1", token(), deadline())
    assert isinstance(form, AutoSubmit)
    assert form.term_url == "https://pay.example/v1/charges/ch_1/3ds/return"
    assert form.action_origin == "https://acs.example"
    with pytest.raises(NotFoundError):
        svc.open_page("ch_1", token(), deadline())
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
    store, gateway = FakeStore(), Fake3DSGateway()
    three_ds_charge(store, action=action)
    answer = service(gateway, store, allow_loopback=loopback).open_page("ch_1", token(), deadline())
    assert isinstance(answer, AutoSubmit) is ok
    if not ok:
        assert isinstance(answer, Finish)
        assert answer.charge.status is ChargeStatus.DECLINED
        assert answer.redirect == "https://shop/fail?chargeId=ch_1&status=DECLINED"


def test_expired_page_asks_the_status_api_then_expires_the_charge() -> None:
    store, gateway = FakeStore(), Fake3DSGateway(status_name="3D")
    three_ds_charge(store)
    later = NOW + timedelta(minutes=21)
    answer = service(gateway, store, now=later).open_page("ch_1", token(), deadline())
    assert isinstance(answer, Finish)
    assert answer.charge.status is ChargeStatus.EXPIRED
    assert gateway.ops() == ["status"]
    assert [e.to_status for e in store.history["ch_1"]] == [ChargeStatus.EXPIRED]


def test_return_checks_md_then_confirms_once_and_settles_by_status() -> None:
    store, gateway = FakeStore(), Fake3DSGateway(status_name="CHARGE")
    three_ds_charge(store)
    svc = service(gateway, store)
    with pytest.raises(MdMismatchError):
        svc.complete("ch_1", "pares", "md-2", deadline())
    assert gateway.calls == []
    assert store.writes == 0
    finish = svc.complete("ch_1", "pares", "md-1", deadline())
    assert gateway.ops() == ["confirm", "status"]
    assert gateway.calls[0] == ("confirm", ("epay-token", "pares", "md-1"))
    assert finish.charge.status is ChargeStatus.CAPTURED
    assert finish.redirect == "https://shop/ok?chargeId=ch_1&status=CAPTURED"
    again = svc.complete("ch_1", "pares", "md-1", deadline())
    assert again.redirect == finish.redirect
    assert gateway.ops() == ["confirm", "status"]


def test_concurrent_double_submit_calls_confirm_once_and_both_see_the_outcome() -> None:
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
        target=lambda: results.append(svc.complete("ch_1", "pares", "md-1", deadline()))
    )
    worker.start()
    assert gateway.on_confirm is not None
    assert gateway.on_confirm.wait(5)
    # When the same post arrives while the first is still at ePay
    second = svc.complete("ch_1", "pares", "md-1", deadline())
    worker.join(5)
    # Then it waited for the first, ePay was called once, and both answers agree
    assert naps
    assert gateway.ops().count("confirm") == 1
    assert second.charge.status is ChargeStatus.DECLINED
    assert (
        second.redirect
        == results[0].redirect
        == ("https://shop/fail?chargeId=ch_1&status=DECLINED")
    )


def test_confirm_failure_still_asks_the_status_api() -> None:
    store = FakeStore()
    gateway = Fake3DSGateway(
        status_name="AUTH",
        confirm_outcome=GatewayUnknownOutcomeError("timeout", operation="confirm"),
    )
    three_ds_charge(store)
    finish = service(gateway, store).complete("ch_1", "pares", "md-1", deadline())
    assert gateway.ops() == ["confirm", "status", "capture"]
    assert finish.charge.status is ChargeStatus.CAPTURED
