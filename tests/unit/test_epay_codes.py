"""ePay's error-code table (payments.epay.codes): finality as ePay documents it, categories for
dunning, and what the adapter makes of a refusal with each kind of code."""

from __future__ import annotations

import pytest

from payments.charges.declines import DeclineCategory
from payments.epay import codes
from payments.epay.responses import refusal
from payments.errors import GatewayRejectedError, GatewayUnknownOutcomeError


def test_the_table_names_its_source_and_holds_epays_rows() -> None:
    # Given the table / Then it names ePay's page and holds its rows 454-529 (474 and 504-520
    # are not on the page)
    assert codes.SOURCE == "https://epayment.kz/docs/kody-oshibok"
    assert set(codes.TABLE) == set(range(454, 474)) | set(range(475, 504)) | set(range(521, 530))
    assert len(codes.TABLE) == 58
    # And the rows the stored copy of the page shows are told apart from the copied ones
    assert {c for c, row in codes.TABLE.items() if row.seen is codes.Seen.PAGE} == set(
        range(454, 474)
    ) | set(range(475, 480))


def test_only_454_and_459_are_not_final() -> None:
    # Given ePay's finality column (459: the KK page says not final, RU/EN final: safe reading)
    # Then exactly these two ask for the status API
    assert {c for c, row in codes.TABLE.items() if not row.final} == {454, 459}
    assert not codes.is_final(454)
    assert not codes.is_final(459)


@pytest.mark.parametrize("code", [1267, 100, 1, 474, 999, None])
def test_a_code_outside_the_table_is_not_final(code: int | None) -> None:
    # Given a code ePay's table does not list (1267: a communication error with the card
    # system) / Then it is not final, and its category is "other"
    assert codes.lookup(code) is None
    assert not codes.is_final(code)
    assert codes.decline_category(code) is DeclineCategory.OTHER


@pytest.mark.parametrize(
    ("category", "codes_of_the_sdk"),
    [
        # epay-api.md section 7, the bank's SDK: lost, stolen, expired, restricted, no such card
        (DeclineCategory.HARD, {465, 467, 471, 472, 478, 479, 481, 482, 483, 485, 489, 490}),
        (DeclineCategory.SOFT, {456, 458, 484, 488, 491, 493, 494, 497}),
        (DeclineCategory.AUTHENTICATION, {455, 468, 473, 496}),
        (DeclineCategory.OTHER, {462, 463, 464, 466, 470, 477, 480, 487}),
    ],
)
def test_categories_follow_the_banks_sdk(
    category: DeclineCategory, codes_of_the_sdk: set[int]
) -> None:
    # Given the codes the bank's SDK puts in a category / Then the table agrees
    assert {code: codes.decline_category(code) for code in codes_of_the_sdk} == dict.fromkeys(
        codes_of_the_sdk, category
    )


@pytest.mark.parametrize(
    ("code", "error", "category"),
    [
        (484, GatewayRejectedError, "soft"),
        (483, GatewayRejectedError, "hard"),
        (455, GatewayRejectedError, "authentication"),
        (454, GatewayUnknownOutcomeError, None),
        (459, GatewayUnknownOutcomeError, None),
        (1267, GatewayUnknownOutcomeError, None),
        (None, GatewayUnknownOutcomeError, None),
    ],
)
def test_a_refused_auth_is_a_decline_only_with_a_final_code(
    code: int | None, error: type[Exception], category: str | None
) -> None:
    # Given an auth refused with a code (or none) / When the adapter reads it
    result = refusal("auth", code, "text", 400)
    # Then a final code is a decline carrying its category; any other leaves the outcome unknown
    assert type(result) is error
    if isinstance(result, GatewayRejectedError):
        assert (result.gateway_code, result.decline_category) == (code, category)
