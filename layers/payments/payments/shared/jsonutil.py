"""JSON that keeps money exact: Decimals are written as numbers with two decimals, never floats."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from payments.shared.money import money_str


def dumps(value: Any) -> str:
    """Serialise dicts, lists, strings, ints, bools, None and Decimals (as 2-decimal numbers)."""
    if isinstance(value, Decimal):
        return money_str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, float):
        raise TypeError("floats are not allowed where money may be involved")
    return json.dumps(value, ensure_ascii=False)


def loads(raw: str | bytes) -> Any:
    """Parse JSON reading every fractional number as a Decimal."""
    return json.loads(raw, parse_float=Decimal)
