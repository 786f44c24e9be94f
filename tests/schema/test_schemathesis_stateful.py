"""Sequences of calls along openapi.yaml's links (schemathesis' stateful testing), over HTTP
against the local stack: create a charge, read it, capture, void or refund it; a subscription's
life (read, change, pause, resume, cancel); a card setup and its reading. Every answer is checked
as in test_schemathesis.py; then the walk must have reached the deep states, not only 4xx."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from schemathesis import Case, Response

from local.epay_sim.cards import CARD_AUTH
from local.run import LocalStack
from tests.schema.config import (
    SEED,
    STATEFUL_SCENARIOS,
    STATEFUL_STEPS,
    TALLY,
    load_schema,
)

schema = load_schema()

# What the walk must reach, so it is not a walk through 4xx alone: each creation and its reading,
# and for each resource at least one state change along a link. Which ones varies a little from
# run to run (the stack's background work, such as the simulator's postLinks and the charge events
# function, can change a status between two steps), so a single one is not required.
REACHED = {
    ("POST /charges", 201),
    ("GET /charges/{chargeId}", 200),
    ("POST /subscriptions", 201),
    ("GET /subscriptions/{subscriptionId}", 200),
    ("POST /card-setups", 201),
    ("GET /card-setups/{setupId}", 200),
}
CHANGES = {
    "charge": {
        ("POST /charges/{chargeId}/capture", 200),
        ("POST /charges/{chargeId}/cancel", 200),
        ("POST /charges/{chargeId}/refunds", 201),
    },
    "subscription": {
        ("PATCH /subscriptions/{subscriptionId}", 200),
        ("POST /subscriptions/{subscriptionId}/pause", 200),
        ("POST /subscriptions/{subscriptionId}/resume", 200),
        ("POST /subscriptions/{subscriptionId}/cancel", 200),
    },
}
# The card is saved under the first account that charges it: one account for the whole walk.
ACCOUNT = "schema-walker"


def make_real(case: Case[Any]) -> None:
    """Aim a generated creation at what the simulator approves, so the links lead somewhere.

    A charge is made on the simulator's approving card: captured at once when the generated body
    asked for `auto` (a refund has something to act on), else held (capture and void do); a
    subscription uses that card and starts now; both for one account. The rest of each body
    stays generated. Only bodies that are JSON objects are touched.
    """
    if case.headers and "Idempotency-Key" in case.headers:
        # One key per request: generated keys repeat ("0"), and a repeat is a replay or a 422.
        case.headers["Idempotency-Key"] = f"schema-{uuid.uuid4()}"
    body: Any = case.body
    if not isinstance(body, dict):
        return
    if case.operation.label == "POST /charges":
        capture = "auto" if body.get("capture") == "auto" else "manual"
        body.update(
            cardId=CARD_AUTH, accountId=ACCOUNT, currency="KZT", amount=1500.00, capture=capture
        )
        body.pop("invoiceId", None)
        body.pop("invoiceIdAlt", None)
    elif case.operation.label == "POST /subscriptions":
        body.update(cardId=CARD_AUTH, accountId=ACCOUNT, currency="KZT", amount=4990.00)
        body.pop("startAt", None)
    elif case.operation.label == "POST /card-setups" and isinstance(body.get("amount"), float):
        # `pay`: at most 2 decimals, which the document says in words, not in its JSON Schema
        body["amount"] = max(round(body["amount"], 2), 1.00)
    elif case.operation.label == "POST /charges/{chargeId}/capture":
        body.pop("amount", None)  # all of it: a generated amount is mostly over the hold
    elif case.operation.label == "POST /charges/{chargeId}/refunds":
        body["amount"] = 100.00


def test_linked_calls_keep_the_document(schema_stack: LocalStack) -> None:
    seen: Counter[tuple[str, int]] = Counter()

    class Workflows(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Case[Any]) -> None:
            make_real(case)

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"base_url": schema_stack.url}

        def after_call(self, response: Response, case: Case[Any]) -> None:
            super().after_call(response, case)
            seen[(case.operation.label, response.status_code)] += 1
            TALLY[f"stateful {case.operation.label}"] += 1

    # Given the document's links / When bounded, seeded walks along them are sent to the stack
    Workflows.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )

    # Then every answer was as documented (checked at each step), and the flows reached their end
    missing = REACHED - set(seen)
    assert not missing, f"the walk never reached {sorted(missing)}; it saw {dict(seen)}"
    for resource, changes in CHANGES.items():
        assert changes & set(seen), f"no {resource} changed along a link; the walk saw {dict(seen)}"
    print(f"stateful: {sum(seen.values())} calls (seed {SEED}): {dict(sorted(seen.items()))}")
