"""Schema tier: schemathesis, driven by openapi.yaml, against `make run`'s stack over HTTP.

One stack per module (DynamoDB Local, moto, the ePay simulator and the local API Gateway on free
loopback ports), so the stateful walk does not start from what the per-operation fuzzing left (a
removed test card, say); the local API does not check SigV4, so no credentials. The
schema is openapi.yaml itself, configured in tests/schema/config.py (seeded, bounded, the checks);
each call is sent to the stack's URL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.run import LocalStack, start_stack
from tests.schema.config import TALLY


@pytest.fixture(scope="module")
def schema_stack() -> Iterator[LocalStack]:
    stack = start_stack(0)
    try:
        yield stack
    finally:
        stack.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many calls the tier sent, per operation and phase (the numbers the bounds give)."""
    if not TALLY:
        return
    by_test: dict[str, int] = {}
    for key, count in TALLY.items():
        test = key.split(" ", 1)[0]
        by_test[test] = by_test.get(test, 0) + count
    summary = ", ".join(f"{test} {count}" for test, count in sorted(by_test.items()))
    terminalreporter.write_line(f"schema tier: {sum(TALLY.values())} calls ({summary})")
