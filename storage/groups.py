"""Service groups (统筹安排): activity, room, weekdays, capacity, and who is on duty.

Defined in a YAML file (examples/groups.yaml). The activity type comes from the same closed list
as the terms, which has no type for teaching lessons (补课). Staff go on duty only with a valid
vetting record; a file naming an unvetted person is refused whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, vetting
from storage.models import GroupDuty, Person, PersonRole, Role, School, ServiceGroup
from storage.terms import ACTIVITY_TYPES, WEEKDAY_ORDER, Weekday


class GroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    activity: str
    room: str = Field(default="", max_length=100)
    weekdays: list[Weekday] = Field(min_length=1)
    capacity: int = Field(ge=1, le=500)
    staff: list[str] = Field(default_factory=list)

    @field_validator("activity")
    @classmethod
    def _allowed(cls, v: str) -> str:
        if v not in ACTIVITY_TYPES:
            raise ValueError(
                f"activity {v!r} is not allowed; use one of {', '.join(ACTIVITY_TYPES)} "
                "(teaching new lessons / 补课 is forbidden by the policy)"
            )
        return v

    @field_validator("weekdays")
    @classmethod
    def _sorted_unique(cls, v: list[str]) -> list[str]:
        return sorted(set(v), key=WEEKDAY_ORDER.index)


class GroupsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    term: str | None = Field(default=None, max_length=60)
    groups: list[GroupSpec] = Field(min_length=1)

    @field_validator("groups")
    @classmethod
    def _unique_names(cls, v: list[GroupSpec]) -> list[GroupSpec]:
        names = [g.name for g in v]
        if len(names) != len(set(names)):
            raise ValueError("group names must be unique")
        return v


def parse_groups(data: Any) -> GroupsFile:
    return GroupsFile.model_validate(data)


class GroupProblem(ValueError):
    """`key` names the problem for messages (`admin.<key>`); `params` fill it."""

    def __init__(self, key: str, **params: object) -> None:
        self.key, self.params = key, params
        super().__init__(f"{key} {params}")


@dataclass
class GroupsReport:
    created: int = 0
    updated: int = 0
    duties: int = 0


async def _staff(session: AsyncSession, school: School, number: str) -> Person:
    person = await session.scalar(
        select(Person).where(Person.school_id == school.id, Person.person_no == number)
    )
    if person is None:
        raise GroupProblem("no_person", person=number, school=school.code)
    allowed = await session.scalar(
        select(PersonRole.id).where(
            PersonRole.person_id == person.id,
            PersonRole.role.in_([Role.TEACHER.value, Role.STAFF.value]),
        )
    )
    if allowed is None:
        raise GroupProblem("not_staff", person=number)
    return person


async def assign_staff(
    session: AsyncSession, group: ServiceGroup, person: Person, today: date, actor_person_id: int | None
) -> GroupDuty:
    """Put a vetted person on duty with a group; raises vetting.NotVetted otherwise."""
    await vetting.require_valid(session, person, today)
    duty = await session.scalar(
        select(GroupDuty).where(GroupDuty.group_id == group.id, GroupDuty.person_id == person.id)
    )
    if duty is None:
        duty = GroupDuty(school_id=group.school_id, group_id=group.id, person_id=person.id)
        session.add(duty)
        await session.flush()
        await audit.record(
            session,
            "group.staff_assigned",
            school_id=group.school_id,
            actor_person_id=actor_person_id,
            target_type="group",
            target_id=group.id,
            person_id=person.id,
        )
    return duty


async def import_groups(
    session: AsyncSession,
    school: School,
    term: str,
    spec: GroupsFile,
    today: date,
    actor_person_id: int | None = None,
) -> GroupsReport:
    """Create or update the groups of a term; the staff list of each group is replaced."""
    report = GroupsReport()
    unvetted: list[str] = []
    staff: dict[str, Person] = {}
    for group_spec in spec.groups:
        for number in group_spec.staff:
            if number not in staff:
                staff[number] = await _staff(session, school, number)
                if await vetting.valid_record(session, staff[number].id, today) is None:
                    unvetted.append(number)
    if unvetted:
        raise GroupProblem("staff_not_vetted", people=", ".join(sorted(set(unvetted))))
    existing = {
        g.name: g
        for g in await session.scalars(
            select(ServiceGroup).where(ServiceGroup.school_id == school.id, ServiceGroup.term == term)
        )
    }
    for group_spec in spec.groups:
        group = existing.get(group_spec.name)
        if group is None:
            group = ServiceGroup(school_id=school.id, term=term, name=group_spec.name)
            session.add(group)
            report.created += 1
        else:
            report.updated += 1
        group.activity_type = group_spec.activity
        group.room = group_spec.room
        group.weekdays = list(group_spec.weekdays)
        group.capacity = group_spec.capacity
        group.active = True
        await session.flush()
        wanted = {staff[n].id for n in group_spec.staff}
        for duty in await session.scalars(select(GroupDuty).where(GroupDuty.group_id == group.id)):
            if duty.person_id not in wanted:
                await session.delete(duty)
        for number in group_spec.staff:
            await assign_staff(session, group, staff[number], today, actor_person_id)
            report.duties += 1
    await session.flush()
    return report


async def groups_of_term(session: AsyncSession, school_id: int, term: str) -> list[ServiceGroup]:
    return list(
        await session.scalars(
            select(ServiceGroup)
            .where(
                ServiceGroup.school_id == school_id,
                ServiceGroup.term == term,
                ServiceGroup.active.is_(True),
            )
            .order_by(ServiceGroup.id)
        )
    )


async def staff_on_duty(session: AsyncSession, group_ids: list[int]) -> dict[int, list[Person]]:
    rows = await session.execute(
        select(GroupDuty.group_id, Person)
        .join(Person, Person.id == GroupDuty.person_id)
        .where(GroupDuty.group_id.in_(group_ids))
        .order_by(Person.name)
    )
    found: dict[int, list[Person]] = {gid: [] for gid in group_ids}
    for group_id, person in rows:
        found[group_id].append(person)
    return found
