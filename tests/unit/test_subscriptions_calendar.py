"""Calendar math: cycles are counted from the anchor; month ends clamp without drifting; UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payments.subscriptions.calendar import BillingInterval, Interval, add_months, cycle_start

JAN31 = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)


def monthly(count: int = 1) -> BillingInterval:
    return BillingInterval(Interval.MONTH, count)


def test_anchor_on_31_january_renews_on_the_last_day_of_short_months() -> None:
    # Given an anchor on 31 January / When we list twelve monthly cycles
    days = [cycle_start(JAN31, monthly(), n).date().isoformat() for n in range(13)]
    # Then short months get their last day and long months the 31st again (no drift to the 28th)
    assert days == [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30",
        "2027-07-31", "2027-08-31", "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31",
        "2028-01-31",
    ]  # fmt: skip
    # And the time of day is kept
    assert {cycle_start(JAN31, monthly(), n).time() for n in range(13)} == {JAN31.time()}


def test_leap_years() -> None:
    # Given a monthly anchor on 31 January of a leap year / Then February's cycle is the 29th
    assert cycle_start(datetime(2028, 1, 31, tzinfo=UTC), monthly(), 1).day == 29
    # Given a yearly anchor on 29 February / Then it renews on the 28th, and on the 29th again
    # in the next leap year
    feb29 = datetime(2028, 2, 29, tzinfo=UTC)
    yearly = BillingInterval(Interval.YEAR, 1)
    assert [cycle_start(feb29, yearly, n).date().isoformat() for n in range(5)] == [
        "2028-02-29", "2029-02-28", "2030-02-28", "2031-02-28", "2032-02-29",
    ]  # fmt: skip


def test_counts_and_units() -> None:
    # Given an anchor on 31 January
    # Then every 3 months clamps to 30 April and comes back to the 31st a year on
    assert cycle_start(JAN31, monthly(3), 1).date().isoformat() == "2027-04-30"
    assert cycle_start(JAN31, monthly(3), 4).date().isoformat() == "2028-01-31"
    # And weeks and days are exact durations, years whole years
    assert cycle_start(JAN31, BillingInterval(Interval.WEEK, 2), 3) == JAN31 + timedelta(weeks=6)
    assert cycle_start(JAN31, BillingInterval(Interval.DAY, 1), 365) == JAN31 + timedelta(days=365)
    assert cycle_start(JAN31, BillingInterval(Interval.YEAR, 2), 1).year == 2029


@pytest.mark.parametrize(
    ("months", "expected"),
    [
        (0, "2027-01-31"),
        (1, "2027-02-28"),
        (11, "2027-12-31"),
        (-2, "2026-11-30"),
        (25, "2029-02-28"),
    ],
)
def test_add_months(months: int, expected: str) -> None:
    # Given 31 January / When months are added (or taken away) / Then short months clamp
    assert add_months(JAN31, months).date().isoformat() == expected


def test_cycles_are_computed_in_utc() -> None:
    # Given an anchor given with an offset (+05:00, Almaty), converted to UTC on input
    anchor = datetime.fromisoformat("2027-03-01T02:00:00+05:00").astimezone(UTC)
    # Then the anchor day is the UTC day (28 February), and so is every renewal's
    assert anchor.date().isoformat() == "2027-02-28"
    assert cycle_start(anchor, monthly(), 1).date().isoformat() == "2027-03-28"
