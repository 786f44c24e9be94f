"""Chaos: ~300 charges across every outcome with random faults, crashes and lost postLinks, voids
and refunds (partial, whole, racing, replayed) with faults of their own, then the charges' and the
refunds' reconcilers, two of each at once, on a test clock until nothing is due; then card setups
(verifications and first payments, approved or declined on ePay's page) whose postLinks are mostly
lost or sent several times, settled by the setups' and the charges' reconcilers. ePay's ledger is
the truth."""

from __future__ import annotations

from decimal import Decimal

import pytest

from local.chaos import run_chaos
from local.epay_sim import TEST_TERMINAL2_ID, TEST_TERMINAL_ID
from payments.cards.model import SetupStatus
from payments.charges.model import ChargeStatus
from payments.refunds.model import RefundStatus
from tests.integration.conftest import Stack

S = ChargeStatus
R = RefundStatus
SETUPS = 6


@pytest.mark.slow
def test_every_charge_and_refund_ends_as_the_ledger_says(stack: Stack) -> None:
    # Given 300 charges on two terminals (customer-present on the 3-D Secure one, recurring on
    # the other) meeting faults, crashes, non-final error codes (some whose transaction
    # went through), errors answered with HTTP 200, a flaky status API and no postLink at all;
    # held charges voided (cancels meeting faults), captured ones refunded partly and wholly, in
    # turn and at once, refunds meeting faults before and after ePay commits them
    # And then card setups, verifying and paying, approved and declined on ePay's page, most of
    # their postLinks lost, others sent three times, first payments' captures meeting faults
    # When the reconcilers run until nothing is due
    report = run_chaos(
        table=stack.table,
        dynamodb=stack.dynamodb,
        simulator=stack.simulator,
        charges=300,
        seed=20261128,
        stop_3ds=True,
        setups=SETUPS,
    )
    print(
        f"\nchaos: faults {dict(sorted(report.faults.items()))}\n"
        f" after create {dict(report.after_create)}\n final {dict(report.final)}\n"
        f" voids {dict(report.voids)} -> {dict(report.voids_final)}\n"
        f" refund plans {dict(report.refund_plans)}\n"
        f" refunds after their call {dict(report.refunds_after_call)}\n"
        f" refunds final {dict(report.refunds_final)}; NEEDS_REVIEW refunds "
        f"{report.refunds_needs_review}\n"
        f" refunded: ours {report.refunded_ours}, ledger {report.refunded_ledger}, in review "
        f"{report.refunded_in_review}; sent twice {report.refunds_sent_twice}\n"
        f" reconciler runs that raised {dict(report.reconcile_errors)}\n"
        f" setups {dict(report.setup_plans)}; postLinks {dict(report.setup_postlinks)}, "
        f"answered {dict(report.setup_postlink_answers)}; faults {dict(report.setup_faults)}\n"
        f" setups before reconciling {dict(report.setups_before_reconcile)}, final "
        f"{dict(report.setups_final)}; reconciler {dict(report.setup_reconciler)}; cards "
        f"{report.setup_cards}; first payments {dict(report.setup_charges_final)}; setup "
        f"mismatches {report.setup_mismatches}\n"
        f" rounds {report.rounds} (+{report.setup_rounds} for setups); create "
        f"{report.create_seconds:.1f}s, voids and refunds {report.refund_seconds:.1f}s, "
        f"reconcile {report.reconcile_seconds:.1f}s, card setups {report.setup_seconds:.1f}s"
    )
    # Then every charge and card setup ended as ePay's ledger says, and none needs a person
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
    # And every refund is as the ledger has it: each that succeeded returned once under its own
    # id, each that failed never, none left pending, and reservations are released
    assert report.refund_mismatches == []
    assert report.refunded_ledger == report.refunded_ours + report.refunded_in_review
    assert report.refunded_ours > Decimal(0)
    # And no refund was ever sent to ePay twice, nor returned twice
    assert report.refunds_sent_twice == 0
    assert report.ledger_refunds_twice == 0
    # And refunds were exercised: many went through, some never reached ePay (failed after an
    # hour unseen), some answers were lost (PENDING until the reconciler read ePay's status),
    # racing ones were refused for want of money left, replays answered the same refund
    assert report.refunds_final[R.SUCCEEDED.value] > 30
    assert report.refunds_final[R.FAILED.value] > 0
    assert report.refunds_after_call[R.PENDING.value] > 5
    assert report.refunds_after_call["refused"] > 0
    assert report.refunds_after_call["replayed"] > 0
    assert report.final[S.PARTIALLY_REFUNDED.value] > 0
    assert report.final[S.REFUNDED.value] > 0
    # And voids too: held charges cancelled, some answers lost and finished by the reconciler
    assert report.voids_final[S.CANCELLED.value] > 5
    assert report.voids["unknown"] > 0
    assert report.final[S.AUTHORIZED.value] > 0  # held charges nobody cancelled stay held
    # And no reconciler run broke off, and no refund was left to a person but where ePay's total
    # matches more than one set of a charge's lost refunds (the service never guesses; racing
    # refunds' amounts are distinct, so that takes lost refunds of two plans adding up alike)
    assert report.reconcile_errors == {}
    ambiguous = [why for _, why in report.refunds_in_review if "in several ways" in why]
    assert ambiguous == [why for _, why in report.refunds_in_review]
    assert report.refunds_needs_review <= 2
    # And every card setup is settled as ePay's ledger says, none left PENDING, though the
    # postLinks of some never came: each approved one SUCCEEDED with the ledger's card saved
    # once, each declined one FAILED with none, each first payment CAPTURED as the ledger has it
    # (all in `mismatches` above)
    assert report.setup_mismatches == []
    assert sum(report.setups_final.values()) == SETUPS
    assert set(report.setups_final) == {SetupStatus.SUCCEEDED.value, SetupStatus.FAILED.value}
    assert report.setup_cards == report.setups_final[SetupStatus.SUCCEEDED.value]
    assert report.setup_postlinks["lost"] > 0
    assert report.setups_before_reconcile[SetupStatus.PENDING.value] > 0
    assert report.setup_reconciler["settled"] > 0
    # And they covered verifications and first payments, approved and declined
    assert report.setup_plans["verify:approve"] > 0
    assert report.setup_plans["verify:decline"] > 0
    paid = report.setup_plans["pay:approve"] + report.setup_plans["pay:3ds:approve"]
    assert paid > 0
    assert report.setup_plans["pay:decline"] + report.setup_plans["pay:3ds:fail"] > 0
    assert report.setup_charges_final == {S.CAPTURED.value: paid}
