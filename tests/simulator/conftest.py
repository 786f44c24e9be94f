"""Fixtures of the simulator tests: one loopback ePay per test module, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import urllib3

from local.epay_sim import EpaySimulator
from tests.simulator.epay_client import FakeClock


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def sim(clock: FakeClock) -> Iterator[EpaySimulator]:
    simulator = EpaySimulator(host="127.0.0.1", port=0, clock=clock).start()
    yield simulator
    simulator.stop()


@pytest.fixture(autouse=True)
def _fresh_sim(sim: EpaySimulator) -> None:
    sim.reset()


@pytest.fixture(scope="module")
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=5.0))
    yield pool
    pool.clear()
