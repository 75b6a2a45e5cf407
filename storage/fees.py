"""Fees come only from the published standard, and every line says how it was computed (四.三).

Pure functions: the caller passes the terms' fee standard, the child's options and the month.
Rule: the afternoon service costs `per_session` for each service day the child attends in the
month, but never more than `per_month`; noon care is `noon_care_per_month` when chosen and the
child attends at least one day that month; lunch is `lunch_per_day` for each attended day. A granted
waiver (建档立卡) makes every line 0 and says why; a pending one shows the normal amount as pending.
"""

from __future__ import annotations

import calendar
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Waiver(enum.StrEnum):
    NONE = "none"
    PENDING = "pending"
    GRANTED = "granted"
    REFUSED = "refused"


@dataclass(frozen=True)
class FeeStandard:
    per_month: Decimal
    per_session: Decimal
    noon_care_per_month: Decimal | None = None
    lunch_per_day: Decimal | None = None

    @classmethod
    def from_terms(cls, fees: dict[str, object]) -> FeeStandard:
        """From a published terms version's `fees` mapping (amounts stored as strings)."""

        def amount(key: str) -> Decimal | None:
            value = fees.get(key)
            return None if value is None else Decimal(str(value))

        per_month, per_session = amount("per_month"), amount("per_session")
        if per_month is None or per_session is None:
            raise ValueError("the fee standard needs per_month and per_session")
        return cls(per_month, per_session, amount("noon_care_per_month"), amount("lunch_per_day"))


@dataclass(frozen=True)
class FeeLine:
    """One explainable line: `kind` names it for the messages; quantity × unit, capped or waived."""

    kind: str  # "afternoon" | "noon_care" | "lunch"
    quantity: int
    unit: Decimal
    amount: Decimal
    capped_at_month: bool = False
    waived: bool = False


@dataclass(frozen=True)
class FeeBill:
    month: date
    sessions: int
    lines: tuple[FeeLine, ...]
    waiver: Waiver

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


def service_days(
    month: date,
    weekdays: Iterable[str],
    closed: Iterable[date] = (),
    start: date | None = None,
    end: date | None = None,
) -> list[date]:
    """The dates of `month` on the child's weekdays, without closed days, inside [start, end].

    `start`/`end` cut partial months (a child who starts mid-month pays only from then).
    """
    wanted = {WEEKDAYS.index(d) for d in weekdays}
    shut = set(closed)
    _, length = calendar.monthrange(month.year, month.month)
    days = []
    for n in range(1, length + 1):
        day = date(month.year, month.month, n)
        if day.weekday() not in wanted or day in shut:
            continue
        if (start and day < start) or (end and day > end):
            continue
        days.append(day)
    return days


def monthly_bill(
    standard: FeeStandard,
    month: date,
    weekdays: Iterable[str],
    *,
    noon_care: bool = False,
    lunch: bool = False,
    waiver: Waiver = Waiver.NONE,
    closed: Iterable[date] = (),
    start: date | None = None,
    end: date | None = None,
) -> FeeBill:
    days = service_days(month, weekdays, closed, start, end)
    sessions = len(days)
    waived = waiver is Waiver.GRANTED
    by_session = standard.per_session * sessions
    capped = by_session > standard.per_month
    lines = [
        FeeLine(
            "afternoon",
            sessions,
            standard.per_session,
            Decimal(0) if waived else min(by_session, standard.per_month),
            capped_at_month=capped,
            waived=waived,
        )
    ]
    if noon_care and standard.noon_care_per_month is not None:
        noon = standard.noon_care_per_month if sessions else Decimal(0)
        lines.append(
            FeeLine(
                "noon_care",
                1 if sessions else 0,
                standard.noon_care_per_month,
                Decimal(0) if waived else noon,
                waived=waived,
            )
        )
    if lunch and standard.lunch_per_day is not None:
        lines.append(
            FeeLine(
                "lunch",
                sessions,
                standard.lunch_per_day,
                Decimal(0) if waived else standard.lunch_per_day * sessions,
                waived=waived,
            )
        )
    return FeeBill(date(month.year, month.month, 1), sessions, tuple(lines), waiver)
