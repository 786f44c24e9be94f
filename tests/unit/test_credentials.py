"""The ePay secret's two shapes and the settings of the invoice space (payments.config)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from payments.charges.terminals import Purpose, Terminal
from payments.config import load_settings, parse_credentials
from payments.errors import ConfigurationError

T1 = "67e34d63-102f-4bd1-898e-370781d0074d"
T2 = "0f0e3c59-5c55-4b53-9a0d-2b3f1b6f2a10"


def test_the_single_terminal_shape_serves_every_purpose() -> None:
    secret = {"client_id": "test", "client_secret": "s", "terminal_id": T1}
    assert parse_credentials(secret) == ("test", "s", (Terminal(T1, frozenset(Purpose)),))


def test_the_terminals_shape_keeps_order_purposes_and_weights() -> None:
    secret = {
        "client_id": "test",
        "client_secret": "s",
        "terminals": [
            {"id": T1, "purpose": ["cit", "setup"]},
            {"id": T2, "purpose": ["mit"], "weight": 3},
        ],
    }
    _, _, terminals = parse_credentials(secret)
    assert terminals == (
        Terminal(T1, frozenset({Purpose.CIT, Purpose.SETUP}), 1),
        Terminal(T2, frozenset({Purpose.MIT}), 3),
    )


@pytest.mark.parametrize(
    ("terminals", "says"),
    [
        ([], "non-empty list"),
        ([{"id": T1, "purpose": ["cit"]}], "serves mit"),
        ([{"id": T1, "purpose": ["cit", "mit"]}, {"id": T1, "purpose": ["mit"]}], "twice"),
        ([{"id": T1, "purpose": ["cit", "mit", "moto"]}], "purpose must list"),
        ([{"id": T1, "purpose": "cit"}], "purpose must list"),
        ([{"id": "", "purpose": ["cit", "mit"]}], "needs an id"),
        ([{"id": T1, "purpose": ["cit", "mit"], "weight": 0}], "weight"),
        ([{"id": T1, "purpose": ["cit", "mit"], "weight": 2.5}], "weight"),
        ([{"id": T1, "purpose": ["cit", "mit"], "weight": True}], "weight"),
    ],
)
def test_a_bad_terminals_list_is_refused_by_name(terminals: Any, says: str) -> None:
    secret = {"client_id": "test", "client_secret": "s", "terminals": terminals}
    with pytest.raises(ConfigurationError, match=says):
        parse_credentials(secret)


def test_both_shapes_at_once_or_neither_are_refused() -> None:
    both = {"client_id": "c", "client_secret": "s", "terminal_id": T1, "terminals": []}
    with pytest.raises(ConfigurationError, match="not both"):
        parse_credentials(both)
    with pytest.raises(ConfigurationError, match="terminal_id or terminals"):
        parse_credentials({"client_id": "c", "client_secret": "s"})


ENV = {"EPAY_SECRET_ID": "s", "PAYMENTS_TABLE": "t", "PUBLIC_BASE_URL": "https://pay.example"}


def test_the_invoice_window_defaults_to_400_days_and_is_checked() -> None:
    assert load_settings(ENV).invoice_window == timedelta(days=400)
    assert load_settings(ENV | {"INVOICE_SUFFIX_WINDOW_DAYS": "30"}).invoice_window == timedelta(
        days=30
    )
    for bad in ("0", "-1", "1.5", "3651", "forever"):
        with pytest.raises(ConfigurationError, match="INVOICE_SUFFIX_WINDOW_DAYS"):
            load_settings(ENV | {"INVOICE_SUFFIX_WINDOW_DAYS": bad})
