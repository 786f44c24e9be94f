"""docs/iam/merchant-policy.json grants every merchant route this client calls, and no operator
route (reconcile, and the future resolve/replay/operator paths). Skipped outside the repository."""

from __future__ import annotations

import json
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from client_fakes import FakeTransport, error
from epay_payments_client import Interval, NotFound, PaymentsClient

POLICY = Path(__file__).resolve().parents[3] / "docs" / "iam" / "merchant-policy.json"
ARN = "arn:aws:execute-api:eu-central-1:111122223333:a1b2c3d4e5/$default/"
CH = "ch_" + "0" * 32
SUB = "sub_" + "0" * 32

pytestmark = pytest.mark.skipif(not POLICY.exists(), reason="not in the service's repository")

MERCHANT_CALLS: dict[str, Callable[[PaymentsClient], Any]] = {
    "create_charge": lambda c: c.create_charge(
        amount=1, currency="KZT", card_id="c", account_id="a", description="d"
    ),
    "get_charge": lambda c: c.get_charge(CH),
    "search_charges": lambda c: c.search_charges(account_id="a"),
    "capture_charge": lambda c: c.capture_charge(CH),
    "cancel_charge": lambda c: c.cancel_charge(CH),
    "create_refund": lambda c: c.create_refund(CH),
    "list_refunds": lambda c: c.list_refunds(CH),
    "get_refund": lambda c: c.get_refund("re_1"),
    "create_subscription": lambda c: c.create_subscription(
        account_id="a",
        card_id="c",
        amount=1,
        currency="KZT",
        description="d",
        interval=Interval("month"),
    ),
    "get_subscription": lambda c: c.get_subscription(SUB),
    "list_subscriptions": lambda c: c.list_subscriptions("a"),
    "update_subscription": lambda c: c.update_subscription(SUB, description="d"),
    "pause_subscription": lambda c: c.pause_subscription(SUB),
    "resume_subscription": lambda c: c.resume_subscription(SUB),
    "cancel_subscription": lambda c: c.cancel_subscription(SUB),
    "create_card_setup": lambda c: c.create_card_setup(account_id="a", back_link="https://x"),
    "get_card_setup": lambda c: c.get_card_setup("cs_1"),
    "list_cards": lambda c: c.list_cards("a", refresh=True),
    "remove_card": lambda c: c.remove_card("a", "c"),
}
OPERATOR_ROUTES = [
    ("POST", f"/charges/{CH}/reconcile"),
    ("POST", f"/charges/{CH}/resolve"),
    ("GET", f"/charges/{CH}/resolve"),
    ("POST", "/postlinks/pl_1/replay"),
    ("GET", "/operator/charges"),
    ("POST", "/operator/charges/x/resolve"),
]


def _statements(effect: str) -> list[str]:
    policy = json.loads(POLICY.read_text())
    resources: list[str] = []
    for statement in policy["Statement"]:
        assert statement["Action"] == "execute-api:Invoke"
        if statement["Effect"] == effect:
            resources += statement["Resource"]
    return [
        r.replace("arn:aws:execute-api:<region>:<account-id>:<merchant-api-id>/$default/", ARN)
        for r in resources
    ]


def _verdict(method: str, path: str) -> str:
    arn = f"{ARN}{method}{path}"
    if any(fnmatchcase(arn, pattern) for pattern in _statements("Deny")):
        return "deny"
    if any(fnmatchcase(arn, pattern) for pattern in _statements("Allow")):
        return "allow"
    return "implicit deny"


def _route_of(call: Callable[[PaymentsClient], Any]) -> tuple[str, str]:
    transport = FakeTransport([error(404, "not_found")])
    client = PaymentsClient.local(transport=transport, max_retries=0)
    with pytest.raises(NotFound):
        call(client)
    (sent,) = transport.sent
    return sent.method, urlsplit(sent.url).path


@pytest.mark.parametrize("name", sorted(MERCHANT_CALLS))
def test_every_merchant_call_is_allowed(name: str) -> None:
    method, path = _route_of(MERCHANT_CALLS[name])
    assert _verdict(method, path) == "allow", (method, path)


def test_reconcile_is_an_operator_route() -> None:
    method, path = _route_of(lambda c: c.reconcile_charge(CH))
    assert _verdict(method, path) != "allow"


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
def test_operator_routes_are_not_granted(method: str, path: str) -> None:
    assert _verdict(method, path) == "deny"


def test_every_public_method_is_classified() -> None:
    # A new client method must be added to MERCHANT_CALLS (or be an operator's) so the policy
    # is checked for it.
    public = {
        name
        for name in dir(PaymentsClient)
        if not name.startswith("_") and callable(getattr(PaymentsClient, name))
    }
    helpers = {"close", "local", "iter_cards", "iter_charges", "iter_subscriptions"}
    assert public - helpers == set(MERCHANT_CALLS) | {"reconcile_charge"}
