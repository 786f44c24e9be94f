"""End-to-end tier: the local stack (`make run`'s) over HTTP, and a real browser where the
customer acts. Fixtures are per module: each module gets its own stack."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from local.run import LocalStack, start_stack
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def local_stack() -> Iterator[LocalStack]:
    stack = start_stack(0)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    import playwright.sync_api as playwright_sync

    with playwright_sync.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2, read=20), retries=False)
    yield pool
    pool.clear()


@pytest.fixture(scope="module", autouse=True)
def artifacts(request: pytest.FixtureRequest) -> Path | None:
    """The module's screenshot folder (its ARTIFACTS), emptied first; None when it has none."""
    folder: Path | None = getattr(request.module, "ARTIFACTS", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    return folder
