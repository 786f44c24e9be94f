"""Refund requests, the refundable amount and how ePay's returned total is read (pure parts of
payments.refunds)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from payments.charges.model import ChargeStatus
from payments.charges.payment_gateway import StatusResult, TransactionStatus
from payments.errors import AmountNotRefundableError, InvalidTransitionError, ValidationError
from payments.refunds.model import Refund, RefundStatus, is_refund_id, minimum_refund
from payments.refunds.reconciler import returned_by_epay, shown
from payments.refunds.requests import RefundRequest, parse_refund_request
from payments.refunds.service import _checked_amount
from tests.fakes import make_charge

NOW = datetime(2026, 12, 6, tzinfo=UTC)


def pending(refund_id: str, amount: str) -> Refund:
    return Refund(
        refund_id, "ch_1", Decimal(amount), "KZT", RefundStatus.PENDING, "k", "h", NOW, NOW
    )


def test_a_refund_request_is_optional_and_strict() -> None:
    assert parse_refund_request(None) == RefundRequest()
    parsed = parse_refund_request(
        {"amount": Decimal("10.5"), "reason": "late", "metadata": {"ticket": "7"}}
    )
    assert parsed == RefundRequest(Decimal("10.50"), "late", {"ticket": "7"})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": Decimal("1.001")}, "amount"),
        ({"amount": True}, "amount"),
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 201}, "reason"),
        ({"metadata": []}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
        ({"refund": 1}, "refund"),
    ],
)
def test_bad_refund_fields_are_named(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_refund_request(body)
    assert field in refused.value.fields


def test_the_amount_left_to_refund_counts_refunded_and_reserved() -> None:
    # Given 1000 captured, 300 refunded and 200 reserved by a pending refund
    charge = make_charge(
        status=ChargeStatus.PARTIALLY_REFUNDED,
        captured_amount=Decimal(1000),
        refunded_amount=Decimal(300),
        refund_reserved=Decimal(200),
    )
    # Then 500 is left: no amount means all of it, more is refused, under 10 KZT is invalid
    assert _checked_amount(charge, None) == Decimal(500)
    assert _checked_amount(charge, Decimal(500)) == Decimal(500)
    with pytest.raises(AmountNotRefundableError):
        _checked_amount(charge, Decimal("500.01"))
    with pytest.raises(ValidationError):
        _checked_amount(charge, Decimal("9.99"))
    with pytest.raises(InvalidTransitionError):
        _checked_amount(make_charge(status=ChargeStatus.AUTHORIZED), None)
    assert minimum_refund("KZT") == Decimal(10)


def _answer(status: str, **amounts: str) -> StatusResult:
    money = {k: Decimal(v) for k, v in amounts.items()}
    tx = TransactionStatus(
        "tx", "000000001", status, money.get("amount"), "KZT", None, None, None, None, None,
        original_amount=money.get("org"), returned_amount=money.get("payout"),
    )  # fmt: skip
    return StatusResult("100", "OK", tx)


def test_what_epay_returned_is_read_from_any_shape_of_the_status() -> None:
    assert returned_by_epay(_answer("CHARGE", amount="60", org="100", payout="40")) == 40
    assert returned_by_epay(_answer("CHARGE", amount="60", org="100")) == 40
    assert returned_by_epay(_answer("REFUND", amount="100")) == 100
    assert returned_by_epay(_answer("CHARGE", amount="100")) == 0
    assert returned_by_epay(_answer("AUTH")) is None
    assert returned_by_epay(StatusResult("102", "no such invoice", None)) is None


def test_only_one_set_of_pending_refunds_may_explain_the_total() -> None:
    a, b, c = pending("re_a", "50"), pending("re_b", "50"), pending("re_c", "30")
    assert shown(Decimal(30), [a, c]) == [frozenset({"re_c"})]
    assert shown(Decimal(80), [a, c]) == [frozenset({"re_a", "re_c"})]
    assert shown(Decimal(0), [a, c]) == [frozenset()]
    assert len(shown(Decimal(50), [a, b])) == 2  # which one? nobody can say
    assert shown(Decimal(45), [a, c]) == []


def test_refund_ids_have_one_shape() -> None:
    assert is_refund_id("re_" + "a" * 32)
    assert not is_refund_id("re_" + "a" * 31)
    assert not is_refund_id("ch_" + "a" * 32)
