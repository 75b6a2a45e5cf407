"""Who is expected in a group on a service day: placed, attending that weekday, agreement signed.

A placed child without an agreement in force is listed apart as "not signed" and is not expected:
the school and the parent have not agreed the terms of care yet (签定课后服务协议书).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import agreements
from storage.models import Agreement, Application, ApplicationStatus, SchoolClass, ServiceGroup, Student
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
    return await expected_child(session, group, student_id, day, now) is not None


async def expected_child(
    session: AsyncSession, group: ServiceGroup, student_id: int, day: date, now: datetime
) -> str | None:
    """The child's name if expected in the group that day (placed there, attending that weekday,
    an agreement in force); one query, as a handover asks it on every tap."""
    weekday = WEEKDAY_ORDER[day.weekday()]
    if weekday not in group.weekdays:
        return None
    row = (
        await session.execute(
            _EXPECTED,
            {
                "group_id": group.id,
                "student_id": student_id,
                "placed": ApplicationStatus.PLACED.value,
                "now": now,
            },
        )
    ).first()
    return row[0] if row is not None and weekday in row[1] else None


# Built once: asked on every handover tap.
_EXPECTED = (
    select(Student.name, Application.weekdays)
    .join(Application, Application.student_id == Student.id)
    .where(
        Application.group_id == bindparam("group_id"),
        Application.student_id == bindparam("student_id"),
        Application.status == bindparam("placed"),
        Student.active.is_(True),
        exists().where(
            Agreement.application_id == Application.id,
            or_(Agreement.valid_until.is_(None), Agreement.valid_until > bindparam("now")),
        ),
    )
)
