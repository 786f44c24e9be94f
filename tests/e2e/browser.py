"""Headless Chromium for the browser tests: Debian's own (never `playwright install`), driven by
Python playwright. `require_chromium()` is called at a browser test module's import: in CI a
missing browser is a broken setup (fail); elsewhere the module is skipped."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
TIMEOUT_MS = 15_000


def require_chromium() -> ModuleType:
    """playwright's sync API, once Chromium is known to be there (see the module's doc)."""
    if os.environ.get("CI"):
        import playwright.sync_api as playwright_sync

        assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: .ci/run must install it"
        return playwright_sync
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
        )
    return playwright_sync
