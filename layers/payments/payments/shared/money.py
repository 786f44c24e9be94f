"""Money as Decimal: reading, validating and formatting amounts (never via float)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("999999999.99")
# Larger than any amount this service handles, small enough that quantizing to cents stays within
# Decimal's default 28 digits (quantize raises InvalidOperation past them, e.g. for 1e26).
MAX_READABLE = Decimal("1e18")
CURRENCIES = frozenset({"KZT", "USD", "EUR", "RUB", "GBP", "CNY", "KGS", "UZS"})


def to_money(value: Any) -> Decimal:
    """Read an amount that may arrive as a number or a numeric string; never via float."""
    if isinstance(value, bool):
        raise ValueError("not an amount")
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError("not an amount") from exc
    if not amount.is_finite() or abs(amount) >= MAX_READABLE:
        raise ValueError("not an amount")
    return amount


def money_str(amount: Decimal) -> str:
    """Format an amount with exactly two decimals, as sent to ePay and shown by the API."""
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def validate_amount(value: Any) -> Decimal | str:
    """Return the amount, or a message saying what is wrong with it."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return "must be a JSON number"
    amount = Decimal(value)
    if not amount.is_finite() or amount <= 0:
        return "must be greater than 0"
    # The range first: quantizing 1e26 or more to cents would need more than 28 digits.
    if amount > MAX_AMOUNT:
        return f"must not exceed {MAX_AMOUNT}"
    if amount != amount.quantize(CENT, rounding=ROUND_HALF_UP):
        return "must have at most 2 decimal places"
    return amount.quantize(CENT)
