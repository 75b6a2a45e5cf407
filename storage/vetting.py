"""Staff vetting (品德、健康、资质把关): nobody is on duty without a valid record (四.二, 四.四)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.models import GroupDuty, Person, ServiceGroup, Vetting

EXPIRY_WARNING_DAYS = 30


class NotVetted(PermissionError):
    """The person has no vetting record valid on the day asked."""

    def __init__(self, person: Person) -> None:
        self.person = person
        super().__init__(f"{person.person_no} has no valid vetting record")


async def record(
    session: AsyncSession,
    person: Person,
    *,
    moral_ok: bool,
    health_ok: bool,
    qualification_ok: bool,
    checked_on: date,
    checked_by: str,
    valid_until: date,
    note: str = "",
    actor_person_id: int | None = None,
) -> Vetting:
    if valid_until < checked_on:
        raise ValueError("valid_until is before checked_on")
    row = Vetting(
        school_id=person.school_id,
        person_id=person.id,
        moral_ok=moral_ok,
        health_ok=health_ok,
        qualification_ok=qualification_ok,
        checked_on=checked_on,
        checked_by=checked_by[:100],
        valid_until=valid_until,
        note=note[:500],
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        "vetting.recorded",
        school_id=person.school_id,
        actor_person_id=actor_person_id,
        target_type="person",
        target_id=person.id,
        vetting_id=row.id,
        passed=moral_ok and health_ok and qualification_ok,
        valid_until=valid_until.isoformat(),
    )
    return row


def passed_covering(person_id: Any, on: date) -> ColumnElement[bool]:
    """SQL for "this person has a passed check covering `on`" (a failed check never counts, whatever
    its dates); `person_id` may be a column, so a duty list is checked in the same query."""
    return exists().where(
        Vetting.person_id == person_id,
        *_passed(on),
    )


def _passed(on: date) -> list[ColumnElement[bool]]:
    return [
        Vetting.moral_ok.is_(True),
        Vetting.health_ok.is_(True),
        Vetting.qualification_ok.is_(True),
        Vetting.checked_on <= on,
        Vetting.valid_until >= on,
    ]


async def valid_record(session: AsyncSession, person_id: int, on: date) -> Vetting | None:
    """The newest passed record covering `on`."""
    return await session.scalar(
        select(Vetting)
        .where(Vetting.person_id == person_id, *_passed(on))
        .order_by(Vetting.valid_until.desc(), Vetting.id.desc())
        .limit(1)
    )


async def require_valid(session: AsyncSession, person: Person, on: date) -> Vetting:
    record_ = await valid_record(session, person.id, on)
    if record_ is None:
        raise NotVetted(person)
    return record_


@dataclass(frozen=True)
class ExpiryNotice:
    person_id: int
    person_name: str
    valid_until: date
    groups: tuple[str, ...] = ()


async def expiring_soon(
    session: AsyncSession, school_id: int, today: date, within_days: int = EXPIRY_WARNING_DAYS
) -> list[ExpiryNotice]:
    """People on duty whose vetting ends within `within_days` and who have no later record."""
    horizon = today + timedelta(days=within_days)
    notices = []
    on_duty = await session.scalars(
        select(Person)
        .join(GroupDuty, GroupDuty.person_id == Person.id)
        .where(GroupDuty.school_id == school_id)
        .distinct()
        .order_by(Person.id)
    )
    for person in on_duty:
        current = await valid_record(session, person.id, today)
        if current is not None and current.valid_until <= horizon:
            later = await valid_record(session, person.id, current.valid_until + timedelta(days=1))
            if later is None:
                notices.append(ExpiryNotice(person.id, person.name, current.valid_until))
    return notices


async def take_expired_off_duty(session: AsyncSession, school_id: int, today: date) -> list[ExpiryNotice]:
    """Remove from every group anyone whose vetting is no longer valid; say who and where."""
    removed = []
    rows = (
        await session.execute(
            select(GroupDuty, Person, ServiceGroup)
            .join(Person, Person.id == GroupDuty.person_id)
            .join(ServiceGroup, ServiceGroup.id == GroupDuty.group_id)
            .where(GroupDuty.school_id == school_id)
            .order_by(Person.id, ServiceGroup.id)
        )
    ).all()
    by_person: dict[int, tuple[Person, list[str], list[int]]] = {}
    for duty, person, group in rows:
        if await valid_record(session, person.id, today) is None:
            entry = by_person.setdefault(person.id, (person, [], []))
            entry[1].append(group.name)
            entry[2].append(duty.id)
    for person, groups, duty_ids in by_person.values():
        await session.execute(delete(GroupDuty).where(GroupDuty.id.in_(duty_ids)))
        await audit.record(
            session,
            "vetting.expired_off_duty",
            school_id=school_id,
            target_type="person",
            target_id=person.id,
            duties=duty_ids,
        )
        last = await session.scalar(
            select(Vetting.valid_until)
            .where(Vetting.person_id == person.id)
            .order_by(Vetting.valid_until.desc())
            .limit(1)
        )
        removed.append(ExpiryNotice(person.id, person.name, last or today, tuple(groups)))
    return removed
