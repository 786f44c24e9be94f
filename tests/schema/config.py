"""The schema tier's schemathesis configuration: seeded, bounded, and the checks it runs.

Numbers are chosen so the whole tier stays near a minute on a 2-core machine: every operation
gets its documented examples, schemathesis' coverage cases (boundary and invalid values derived
from the schema) and `MAX_EXAMPLES` generated ones, in both generation modes; the stateful run is
`STATEFUL_SCENARIOS` scenarios of at most `STATEFUL_STEPS` linked calls each.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import schemathesis
from schemathesis.schemas import BaseSchema

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "openapi.yaml"
SEED = 20261128
MAX_EXAMPLES = 10  # generated cases per operation and phase, positive and negative together
STATEFUL_SCENARIOS = 40
STATEFUL_STEPS = 10
# Calls sent, by "<test> METHOD /path" (summed at the end of the run: tests/schema/conftest.py).
TALLY: Counter[str] = Counter()
# What a 5xx may be: 503 only, and then (response_schema_conformance) a documented code:
# gateway_unavailable, store_unavailable, invoice_space_exhausted, event_publish_failed, ...
EXPECTED_STATUSES = ["2xx", "3xx", "4xx", "503"]
# The checks: no undocumented 5xx, and every response as the document says (a documented status,
# its content type, its schema, its required headers).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)

# Methods a path does not document, sent by the coverage phase: each must be refused in the
# documented shape. Not TRACE nor QUERY: the local API Gateway (Python's http.server) has no
# handler for them and answers a bare 501 HTML page, where API Gateway refuses a method it does not
# route with 403 `missing_authentication`; a gap of the local stack, not of the service.
UNEXPECTED_METHODS = ["get", "put", "post", "delete", "options", "patch"]


def schema_config() -> schemathesis.Config:
    """The tier's configuration (the stack's URL is given to each call: it is known only once the
    module's fixture has started the stack)."""
    checks: dict[str, object] = {"enabled": False}
    for name in CHECKS:
        checks[name] = {"enabled": True}
    checks["not_a_server_error"] = {"enabled": True, "expected-statuses": EXPECTED_STATUSES}
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": 30,
            "suppress-health-check": ["all"],
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "checks": checks,
            "phases": {
                "coverage": {"unexpected-methods": UNEXPECTED_METHODS},
                "stateful": {
                    "max-steps": STATEFUL_STEPS,
                    # Deep flows, not rejections (the per-operation test sends the negative data).
                    "generation": {"mode": "positive"},
                    # Only the document's own links: what is walked is what openapi.yaml says.
                    "inference": {"algorithms": []},
                },
            },
        }
    )


def load_schema() -> BaseSchema:
    """openapi.yaml with the tier's configuration."""
    return schemathesis.openapi.from_path(DOCUMENT, config=schema_config())
