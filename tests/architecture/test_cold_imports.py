"""Cold-start hygiene: what each function loads when Lambda imports its handler.

Each functions/<name>/app.py is imported in a fresh interpreter laid out like Lambda, with no
environment but PATH and PYTHONPATH (local.cold_import): a handler that needs configuration or I/O
to import fails here. Then its ``sys.modules`` is held to the table below, the architecture's
intent: every function pays for the domains it serves and nothing more; bootstrap builds and
imports the rest on first use.

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
# The wiring, settings, logging, the shared kernel, the AWS adapters and the charge model every
# domain builds on (architecture.md: subscriptions use the charges' use case).
CORE = frozenset({"bootstrap", "config", "errors", "observability", "shared", "aws", "charges"})
# Never at import time in any function: the X-Ray SDK (Tracer is not used) and Powertools' event
# handler (the layer's own router answers API Gateway).
NEVER = ("aws_xray_sdk", "aws_lambda_powertools.event_handler")


@dataclass(frozen=True)
class Allowed:
    """The most a function may load: payments.<package> names and third-party top levels."""

    layer: frozenset[str]
    third_party: frozenset[str] = BOTO3 | POWERTOOLS


ALLOWED: dict[str, Allowed] = {
    # API functions that reach ePay (the charges API also serves refunds and voids)
    "charges": Allowed(CORE | {"http", "epay", "refunds"}),
    "threeds": Allowed(CORE | {"http", "epay"}),
    "postlink": Allowed(CORE | {"http", "epay"}),
    # the operator API: resolves charges against ePay's status API and replays postLinks
    "operator": Allowed(CORE | {"http", "epay"}),
    # the card API (setups, lists, removal) and the customer's card setup page
    "cards": Allowed(CORE | {"http", "cards"}),
    "card_pages": Allowed(CORE | {"http", "cards"}),
    # the subscriptions API stores and reads; it never charges
    "subscriptions": Allowed(CORE | {"http", "subscriptions"}),
    # scheduled and event-driven functions
    "reconciler": Allowed(CORE | {"epay", "refunds"}),
    "charge_events": Allowed(CORE | {"subscriptions", "refunds", "cards"}),
    "renewal_dispatcher": Allowed(CORE | {"subscriptions"}),
    "renewal_worker": Allowed(CORE | {"epay", "subscriptions"}),
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
