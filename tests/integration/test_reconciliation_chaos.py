"""Chaos: ~300 charges across every outcome with random faults, crashes and lost postLinks, then
two reconcilers at once on a test clock until nothing is due. ePay's ledger is the truth."""

from __future__ import annotations

import pytest

from local.chaos import run_chaos
from local.epay_sim import TEST_TERMINAL2_ID, TEST_TERMINAL_ID
from payments.charges.model import ChargeStatus
from tests.integration.conftest import Stack

S = ChargeStatus


@pytest.mark.slow
def test_every_charge_ends_as_the_ledger_says(stack: Stack) -> None:
    # Given 300 charges on two terminals (customer-present on the 3-D Secure one, recurring on
    # the other) meeting faults, crashes, non-final error codes (some whose transaction
    # went through), errors answered with HTTP 200, a flaky status API and no postLink at all
    # When the reconcilers run until nothing is due
    report = run_chaos(
        table=stack.table,
        dynamodb=stack.dynamodb,
        simulator=stack.simulator,
        charges=300,
        seed=20261128,
    )
    print(
        f"\nchaos: faults {dict(report.faults)}\n after create {dict(report.after_create)}\n"
        f" final {dict(report.final)}; rounds {report.rounds}; "
        f"create {report.create_seconds:.1f}s, reconcile {report.reconcile_seconds:.1f}s"
    )
    # Then every charge ended as ePay's ledger says, and none needs a person
    assert report.mismatches == []
    assert report.final[S.NEEDS_REVIEW.value] == 0
    assert sum(report.final.values()) == 300
    # And the faults really left charges unclear before reconciliation
    assert report.after_create[S.UNKNOWN.value] > 20
    assert report.after_create[S.PROCESSING.value] > 5
    # And charges answered with a non-final code whose money was in fact taken were captured
    assert report.faults["auth:nonfinal_after_commit"] > 5
    assert report.nonfinal_went_through > 0
    # And no invoice was ever authorised twice
    assert report.double_auths == 0
    # And both terminals took charges, each settled against its own terminal's ledger
    assert set(report.terminals) == {TEST_TERMINAL_ID, TEST_TERMINAL2_ID}
    assert min(report.terminals.values()) > 100
    assert all(report.final[s.value] for s in (S.CAPTURED, S.DECLINED, S.EXPIRED, S.FAILED))
