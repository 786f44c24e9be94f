"""Cold-start hygiene: what each function loads when Lambda imports its handler.

Each functions/<name>/app.py is imported in a fresh interpreter laid out like Lambda, with no
environment but PATH and PYTHONPATH (local.cold_import): a handler that needs configuration or I/O
to import fails here. Then its ``sys.modules`` is held to the table below, the architecture's
intent: every function pays for the domains it serves and nothing more; bootstrap builds and
imports the rest on first use. Settings, the ePay client and the use cases are never imported at
init (bootstrap builds them on first use), and a route that only some requests take imports what
it alone needs (docs/decisions.md, 2026-12-06).

urllib3 cannot tell an ePay client apart: ``import boto3`` loads it (botocore sends over urllib3).
So "this function never talks to ePay" is asserted as "payments.epay is not loaded".
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from local.cold_import import cold_import, function_names, third_party

# What `import boto3` brings, then what every handler adds: Powertools' Logger and Metrics.
BOTO3 = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3", "certifi"}
)
POWERTOOLS = frozenset({"aws_lambda_powertools", "typing_extensions"})
# The wiring and its AWS clients' session, logging, errors and the shared kernel: what every
# function imports.
CORE = frozenset({"bootstrap", "clients", "errors", "observability", "shared"})
# Never at import time in any function: the X-Ray SDK (Tracer is not used), Powertools' event
# handler (the layer's own router answers API Gateway), the settings (read on first use: they
# name the charge model) and the ePay client (built on first use).
NEVER = (
    "aws_xray_sdk",
    "aws_lambda_powertools.event_handler",
    "payments.config",
    "payments.epay",
)
# The use cases, and the writer and settler they share, are built by bootstrap on the first
# request: a handler imports models, parsing and views at most. Named by the module's own name in
# any domain (payments.<domain>.<name>).
USE_CASES = frozenset(
    {
        "invoices",
        "postlink",
        "reconciler",
        "renewals",
        "resolution",
        "search",
        "service",
        "settlement",
        "setups",
        "threeds",
        "timeline",
        "transitions",
        "use_cases",
        "voids",
    }
)
# The only use cases a handler may import at init, each with its reason.
USE_CASES_AT_INIT: dict[str, frozenset[str]] = {}


@dataclass(frozen=True)
class Allowed:
    """The most a function may load: payments.<package> names and third-party top levels."""

    layer: frozenset[str]
    third_party: frozenset[str] = BOTO3 | POWERTOOLS


ALLOWED: dict[str, Allowed] = {
    # API functions on charges (the charges API also serves refunds and voids: on their routes)
    "charges": Allowed(CORE | {"http", "charges"}),
    "threeds": Allowed(CORE | {"http", "charges"}),
    "postlink": Allowed(CORE | {"http", "charges", "aws"}),
    # the operator API: resolves charges against ePay's status API and replays postLinks
    "operator": Allowed(CORE | {"http", "charges"}),
    # the card API (setups, lists, removal) and the customer's card setup page: never charges
    "cards": Allowed(CORE | {"http", "cards"}),
    "card_pages": Allowed(CORE | {"http", "cards"}),
    # the subscriptions API stores and reads; it never charges
    "subscriptions": Allowed(CORE | {"http", "subscriptions"}),
    # scheduled and event-driven functions
    "reconciler": Allowed(CORE | {"aws", "charges", "refunds"}),
    # each kind of change imports its domain on its first record
    "charge_events": Allowed(CORE | {"aws"}),
    "renewal_dispatcher": Allowed(CORE),
    # parses its message at init; the charge path (charges, ePay) is built on the first one
    "renewal_worker": Allowed(CORE | {"aws", "subscriptions"}),
}


def test_every_function_has_an_expectation() -> None:
    # Given the function folders / Then each one has a line in the table, and no line is stale
    assert set(function_names()) == set(ALLOWED)


@pytest.mark.parametrize("function", function_names())
def test_cold_import_loads_only_what_the_function_needs(function: str) -> None:
    # Given a fresh interpreter with only PATH and PYTHONPATH
    # When the handler module is imported as Lambda imports it
    loaded = cold_import(function).modules

    # Then it imported (no configuration or I/O needed) and loaded its wiring
    assert "payments.bootstrap" in loaded
    allowed = ALLOWED[function]
    # And only the payments packages the table allows
    layer = {name.split(".")[1] for name in loaded if name.startswith("payments.")}
    extra = sorted(f"payments.{name}" for name in layer - allowed.layer)
    assert not extra, f"{function} loads {extra}"
    # And only the third-party packages the table allows
    outside = third_party(loaded)
    assert outside <= allowed.third_party, (
        f"{function} loads {sorted(outside - allowed.third_party)}"
    )
    # And nothing that is never needed at import time
    never = sorted(m for m in loaded if m.startswith(NEVER))
    assert not never, f"{function} loads {never}"
    # And no use case but the ones the function's handler names at init
    use_cases = {
        m for m in loaded if m.startswith("payments.") and m.rsplit(".", 1)[-1] in USE_CASES
    }
    extra_use_cases = sorted(use_cases - USE_CASES_AT_INIT.get(function, frozenset()))
    assert not extra_use_cases, f"{function} imports {extra_use_cases} at init"
