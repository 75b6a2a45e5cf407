"""Every fee comes from the published standard and explains itself; a granted waiver costs 0."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from storage.fees import FeeStandard, Waiver, monthly_bill, service_days

STANDARD = FeeStandard(Decimal(200), Decimal(12), Decimal(100), Decimal(15))
ALL_WEEK = ("mon", "tue", "wed", "thu", "fri")
SEPT = date(2026, 9, 1)  # September 2026 has 22 weekdays


@pytest.mark.parametrize(
    ("weekdays", "kwargs", "sessions", "afternoon", "capped"),
    [
        (ALL_WEEK, {}, 22, Decimal(200), True),  # 22 × 12 = 264, capped at the monthly 200
        (("mon", "wed"), {}, 9, Decimal(108), False),  # 9 sessions × 12
        (("fri",), {}, 4, Decimal(48), False),
        (ALL_WEEK, {"closed": [date(2026, 9, d) for d in range(1, 12)]}, 13, Decimal(156), False),
        (ALL_WEEK, {"start": date(2026, 9, 24)}, 5, Decimal(60), False),  # joins for the last week
        (ALL_WEEK, {"end": date(2026, 9, 2)}, 2, Decimal(24), False),  # withdraws on the 2nd
        ((), {}, 0, Decimal(0), False),
    ],
)
def test_afternoon_fee_per_session_capped_at_the_month(weekdays, kwargs, sessions, afternoon, capped):
    bill = monthly_bill(STANDARD, SEPT, weekdays, **kwargs)
    line = bill.lines[0]
    assert (bill.sessions, line.amount, line.capped_at_month) == (sessions, afternoon, capped)
    assert line.unit == Decimal(12) and line.quantity == sessions


def test_noon_care_and_lunch_are_separate_explainable_lines():
    bill = monthly_bill(STANDARD, SEPT, ("mon", "tue"), noon_care=True, lunch=True)
    kinds = {line.kind: line for line in bill.lines}
    assert kinds["noon_care"].amount == Decimal(100)
    assert kinds["lunch"].amount == Decimal(15) * kinds["lunch"].quantity
    assert bill.total == sum(line.amount for line in bill.lines)


def test_a_granted_waiver_makes_every_line_zero():
    bill = monthly_bill(STANDARD, SEPT, ALL_WEEK, noon_care=True, lunch=True, waiver=Waiver.GRANTED)
    assert bill.total == 0
    assert all(line.waived for line in bill.lines)


def test_a_pending_waiver_still_shows_the_amount():
    bill = monthly_bill(STANDARD, SEPT, ALL_WEEK, waiver=Waiver.PENDING)
    assert bill.total == Decimal(200) and bill.waiver is Waiver.PENDING


def test_standard_is_read_from_published_terms():
    std = FeeStandard.from_terms({"per_month": "200", "per_session": "12", "lunch_per_day": "15"})
    assert std.noon_care_per_month is None and std.lunch_per_day == Decimal(15)


def test_service_days_count_partial_weeks():
    assert len(service_days(date(2026, 2, 1), ("mon",))) == 4
    assert service_days(date(2026, 9, 1), ("tue",))[0] == date(2026, 9, 1)
