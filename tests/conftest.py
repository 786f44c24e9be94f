"""Hooks of the whole run: the integration tier's coverage of openapi.yaml, in the summary.

They live here, not in tests/integration, because under pytest-xdist (`make test`) only this
conftest reaches the controlling process: each worker hands over the exchanges it checked
(`workeroutput`), and the controller prints the sum once.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

CHECK_MODULE = "tests.integration.openapi_check"
HANDED_OVER = "openapi_seen"


def _seen() -> set[tuple[str, str, int]] | None:
    """The checked (method, path, status) set, if the integration tier was loaded here."""
    module = sys.modules.get(CHECK_MODULE)
    return None if module is None else module.SEEN


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker hands what it checked over to the controller."""
    handed: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    seen = _seen()
    if handed is not None and seen:
        handed[HANDED_OVER] = [list(exchange) for exchange in seen]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The controller adds up what each worker checked."""
    exchanges = getattr(node, "workeroutput", {}).get(HANDED_OVER)
    if exchanges:
        from tests.integration import openapi_check

        openapi_check.SEEN.update((method, path, status) for method, path, status in exchanges)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how much of openapi.yaml the integration tier's responses covered."""
    if _seen():
        from tests.integration import openapi_check

        terminalreporter.write_line(openapi_check.coverage_summary())
