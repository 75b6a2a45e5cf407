"""Who is expected in a group on a service day: placed, attending that weekday, agreement signed.

A placed child without an agreement in force is listed apart as "not signed" and is not expected:
the school and the parent have not agreed the terms of care yet (签定课后服务协议书).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import agreements
from storage.models import Application, ApplicationStatus, SchoolClass, ServiceGroup, Student
from storage.terms import WEEKDAY_ORDER


@dataclass(frozen=True)
class RosterLine:
    application_id: int
    student_id: int
    name: str
    class_name: str
    signed: bool


@dataclass(frozen=True)
class Roster:
    group: ServiceGroup
    day: date
    expected: list[RosterLine]
    not_signed: list[RosterLine]


async def day_roster(session: AsyncSession, group: ServiceGroup, day: date, now: datetime) -> Roster:
    weekday = WEEKDAY_ORDER[day.weekday()]
    rows = await session.execute(
        select(Application, Student, SchoolClass)
        .join(Student, Student.id == Application.student_id)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(
            Application.group_id == group.id,
            Application.status == ApplicationStatus.PLACED.value,
            Student.active.is_(True),
        )
        .order_by(SchoolClass.name, Student.name, Student.id)
    )
    expected, not_signed = [], []
    if weekday in group.weekdays:
        for app, student, cls in rows:
            if weekday not in app.weekdays:
                continue
            signed = await agreements.current(session, app.id, now) is not None
            line = RosterLine(app.id, student.id, student.name, cls.name, signed)
            (expected if signed else not_signed).append(line)
    return Roster(group, day, expected, not_signed)


async def expected(
    session: AsyncSession, group: ServiceGroup, student_id: int, day: date, now: datetime
) -> bool:
    """Is this one child on the group's roster that day? (The handover's check, without the roster.)"""
    weekday = WEEKDAY_ORDER[day.weekday()]
    if weekday not in group.weekdays:
        return False
    app = await session.scalar(
        select(Application).where(
            Application.group_id == group.id,
            Application.student_id == student_id,
            Application.status == ApplicationStatus.PLACED.value,
        )
    )
    return (
        app is not None
        and weekday in app.weekdays
        and await agreements.current(session, app.id, now) is not None
    )
