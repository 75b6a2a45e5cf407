"""Who is who in a school, for pickers: the demo's "who are you" list."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Guardianship, Person, PersonRole, Role, SchoolClass, Student

# Picker order; the caller shows a person once, in the first group that fits.
GROUPS = ("admin", "committee", "head_teacher", "staff", "parent")


@dataclass(frozen=True)
class Entry:
    person_id: int
    group: str
    name: str
    class_name: str = ""
    relation: str = ""
    student: str = ""


async def people_to_try(session: AsyncSession, students_per_class: int) -> list[Entry]:
    """People in GROUPS order: role holders, head teachers, then guardians of each class's first pupils."""
    role_rows = (
        await session.execute(
            select(Person.id, Person.name, PersonRole.role)
            .join(PersonRole, PersonRole.person_id == Person.id)
            .where(PersonRole.role.in_([Role.ADMIN.value, Role.COMMITTEE.value, Role.STAFF.value]))
            .order_by(Person.school_id, Person.person_no)
        )
    ).all()
    entries: list[Entry] = []
    for role in (Role.ADMIN.value, Role.COMMITTEE.value):
        entries += [Entry(pid, role, name) for pid, name, r in role_rows if r == role]
    heads = await session.execute(
        select(Person.id, Person.name, SchoolClass.name)
        .join(SchoolClass, SchoolClass.head_teacher_id == Person.id)
        .order_by(SchoolClass.school_id, SchoolClass.id)
    )
    entries += [Entry(pid, "head_teacher", name, class_name=cls) for pid, name, cls in heads]
    entries += [Entry(pid, "staff", name) for pid, name, r in role_rows if r == Role.STAFF.value]

    place = func.row_number().over(partition_by=Student.class_id, order_by=(Student.student_no, Student.id))
    first = (
        select(Student.id, Student.name, Student.class_id, Student.student_no, place.label("place"))
        .where(Student.active.is_(True))
        .subquery()
    )
    guardians = await session.execute(
        select(Person.id, Person.name, Guardianship.relation, first.c.name, SchoolClass.name)
        .join(Guardianship, Guardianship.person_id == Person.id)
        .join(first, first.c.id == Guardianship.student_id)
        .join(SchoolClass, SchoolClass.id == first.c.class_id)
        .where(first.c.place <= students_per_class)
        .order_by(SchoolClass.school_id, SchoolClass.id, first.c.student_no, Guardianship.position)
    )
    entries += [
        Entry(pid, "parent", name, class_name=cls, relation=rel, student=student)
        for pid, name, rel, student, cls in guardians
    ]
    return entries
