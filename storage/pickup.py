"""Who may collect a child (接送): adults the parents name, one-day authorisations, going home alone,
and absences the parents report. Only a guardian of the child changes any of it."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.enrollment import guardian_among, guardians_of
from storage.models import Absence, GoHomeAloneConsent, PickupAdult, Student

MAX_ADULTS = 8
MAX_NAME = 50
MAX_RELATION = 20
MAX_REASON = 200


ALONE_MIN_GRADE = 3  # "older children" may go home alone: from grade three
_NUMERALS = "一二三四五六七八九"


def grade_number(grade: str) -> int | None:
    """一年级 → 1, "Grade 3" → 3; None when the grade name says nothing usable."""
    digits = re.search(r"\d+", grade)
    if digits:
        return int(digits.group())
    for n, numeral in enumerate(_NUMERALS, start=1):
        if grade.startswith(numeral):
            return n
    return None


def old_enough_to_go_alone(grade: str) -> bool:
    number = grade_number(grade)
    return number is not None and number >= ALONE_MIN_GRADE


class NotGuardian(PermissionError):
    pass


@dataclass(frozen=True)
class Change:
    """What a change did, and which other guardians to tell."""

    adult: PickupAdult | None
    actor: int
    others: list[int]


async def _guardian(session: AsyncSession, people: list[int], student_id: int) -> int:
    actor = await guardian_among(session, people, student_id)
    if actor is None:
        raise NotGuardian(student_id)
    return actor


def new_code(taken: set[str]) -> str:
    """A 4-digit pickup code, different from the child's other adults' codes."""
    while True:
        code = f"{secrets.randbelow(10_000):04d}"
        if code not in taken:
            return code


async def adults(
    session: AsyncSession, student_id: int, on: date, *, later_too: bool = False
) -> list[PickupAdult]:
    """Standing authorisations and the one-day ones for `on` (and after it, with `later_too`)."""
    one_day = PickupAdult.only_on >= on if later_too else PickupAdult.only_on == on
    return list(
        await session.scalars(
            select(PickupAdult)
            .where(
                PickupAdult.student_id == student_id,
                PickupAdult.removed_at.is_(None),
                or_(PickupAdult.only_on.is_(None), one_day),
            )
            .order_by(PickupAdult.only_on.is_not(None), PickupAdult.only_on, PickupAdult.id)
        )
    )


async def add_adult(
    session: AsyncSession,
    people: list[int],
    account_id: int | None,
    student_id: int,
    *,
    name: str,
    relation: str,
    phone_tail: str | None,
    only_on: date | None,
    today: date,
    now: datetime,
) -> Change:
    actor = await _guardian(session, people, student_id)
    student = await session.get(Student, student_id)
    assert student is not None
    current = await adults(session, student_id, today, later_too=True)
    if len([a for a in current if a.only_on is None]) >= MAX_ADULTS and only_on is None:
        raise ValueError("too_many")
    adult = PickupAdult(
        school_id=student.school_id,
        student_id=student_id,
        name=name.strip()[:MAX_NAME],
        relation=relation.strip()[:MAX_RELATION],
        phone_tail=phone_tail,
        code=new_code({a.code for a in current}),
        only_on=only_on,
        created_by=actor,
    )
    session.add(adult)
    await session.flush()
    await audit.record(
        session,
        "pickup.adult_added",
        school_id=student.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="pickup_adult",
        target_id=adult.id,
        student_id=student_id,
        one_day=only_on.isoformat() if only_on else None,
    )
    others = [g for g in await guardians_of(session, student_id) if g != actor]
    return Change(adult, actor, others)


async def remove_adult(
    session: AsyncSession, people: list[int], account_id: int | None, adult_id: int, now: datetime
) -> Change | None:
    adult = await session.get(PickupAdult, adult_id)
    if adult is None or adult.removed_at is not None:
        return None
    actor = await _guardian(session, people, adult.student_id)
    adult.removed_at = now
    await audit.record(
        session,
        "pickup.adult_removed",
        school_id=adult.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="pickup_adult",
        target_id=adult.id,
    )
    others = [g for g in await guardians_of(session, adult.student_id) if g != actor]
    return Change(adult, actor, others)


async def alone_consent(session: AsyncSession, student_id: int) -> GoHomeAloneConsent | None:
    return await session.scalar(
        select(GoHomeAloneConsent)
        .where(GoHomeAloneConsent.student_id == student_id, GoHomeAloneConsent.revoked_at.is_(None))
        .order_by(GoHomeAloneConsent.id.desc())
        .limit(1)
    )


async def consent_alone(
    session: AsyncSession,
    people: list[int],
    account_id: int | None,
    student_id: int,
    text_sha256: str,
    now: datetime,
) -> Change:
    """Record the consent (the exact text's hash, who, when), like a signature."""
    actor = await _guardian(session, people, student_id)
    student = await session.get(Student, student_id)
    assert student is not None
    row = GoHomeAloneConsent(
        school_id=student.school_id,
        student_id=student_id,
        person_id=actor,
        account_id=account_id,
        text_sha256=text_sha256,
        consented_at=now,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        "pickup.alone_consented",
        school_id=student.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="student",
        target_id=student_id,
        sha256=text_sha256,
    )
    return Change(None, actor, [g for g in await guardians_of(session, student_id) if g != actor])


async def revoke_alone(
    session: AsyncSession, people: list[int], account_id: int | None, student_id: int, now: datetime
) -> Change | None:
    actor = await _guardian(session, people, student_id)
    row = await alone_consent(session, student_id)
    if row is None:
        return None
    row.revoked_at = now
    await audit.record(
        session,
        "pickup.alone_revoked",
        school_id=row.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="student",
        target_id=student_id,
    )
    return Change(None, actor, [g for g in await guardians_of(session, student_id) if g != actor])


async def report_absence(
    session: AsyncSession,
    people: list[int],
    account_id: int | None,
    student_id: int,
    first_day: date,
    last_day: date,
    reason: str,
    now: datetime,
) -> Absence:
    actor = await _guardian(session, people, student_id)
    student = await session.get(Student, student_id)
    assert student is not None
    row = Absence(
        school_id=student.school_id,
        student_id=student_id,
        first_day=first_day,
        last_day=last_day,
        reason=reason.strip()[:MAX_REASON],
        reported_by=actor,
        reported_at=now,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        "attendance.absence_reported",
        school_id=student.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="student",
        target_id=student_id,
        first_day=first_day.isoformat(),
        last_day=last_day.isoformat(),
    )
    return row


async def absence_on(session: AsyncSession, student_id: int, day: date) -> Absence | None:
    return await session.scalar(
        select(Absence)
        .where(Absence.student_id == student_id, Absence.first_day <= day, Absence.last_day >= day)
        .order_by(Absence.id.desc())
        .limit(1)
    )
