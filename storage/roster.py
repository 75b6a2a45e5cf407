"""The roster: classes, students, guardians and staff from one CSV file.

Format (UTF-8, header row required; see examples/roster.csv and the README):

    kind,grade,class,number,name,phone,roles,guardian1_name,guardian1_relation,guardian1_phone,
    guardian2_name,guardian2_relation,guardian2_phone

- kind `student`: grade, class, number (student number) and name; guardian 1 required, guardian 2
  optional. Guardians become people with number `<student number>-G1` / `-G2`.
- kind `person`: number (staff or member number), name, roles (`teacher`, `staff`, `committee`,
  `admin`, separated by `;`), optional phone, and optional class: the class they head.

Phones keep their last four digits only. Re-importing updates rows by their numbers and never
duplicates them; the whole file is checked before anything is written.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Guardianship, Person, PersonRole, Role, School, SchoolClass, Student

COLUMNS = [
    "kind",
    "grade",
    "class",
    "number",
    "name",
    "phone",
    "roles",
    "guardian1_name",
    "guardian1_relation",
    "guardian1_phone",
    "guardian2_name",
    "guardian2_relation",
    "guardian2_phone",
]
STAFF_ROLES = {Role.TEACHER.value, Role.STAFF.value, Role.COMMITTEE.value, Role.ADMIN.value}
MAX_NAME = 100
NUMBER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")


@dataclass(frozen=True)
class GuardianRow:
    name: str
    relation: str
    phone_tail: str | None


@dataclass(frozen=True)
class StudentRow:
    line: int
    grade: str
    class_name: str
    number: str
    name: str
    guardians: tuple[GuardianRow, ...]


@dataclass(frozen=True)
class PersonRow:
    line: int
    number: str
    name: str
    roles: frozenset[str]
    phone_tail: str | None
    heads_class: str | None


@dataclass
class Roster:
    students: list[StudentRow] = field(default_factory=list)
    people: list[PersonRow] = field(default_factory=list)


Problem = tuple[int, str, dict[str, object]]  # (line, message key in messages' `roster.*`, params)


class RosterError(ValueError):
    """The file has problems; `problems` holds (line, key, params) for messages to word them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"line {line}: {key} {params}" for line, key, params in problems))


@dataclass
class ImportReport:
    classes_created: int = 0
    students_created: int = 0
    students_updated: int = 0
    people_created: int = 0
    people_updated: int = 0


def _phone_tail(raw: str, line: int, problems: list[Problem]) -> str | None:
    digits = re.sub(r"[\s+\-()]", "", raw)
    if not digits:
        return None
    if not digits.isdigit() or len(digits) < 4:
        problems.append((line, "bad_phone", {"value": raw}))
        return None
    return digits[-4:]


def _clean(value: str | None) -> str:
    return (value or "").strip()


def parse_roster(text: str) -> Roster:
    """Check every row; raise RosterError listing all problems, or return the parsed roster."""
    text = text.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text))
    problems: list[Problem] = []
    missing = [c for c in ("kind", "number", "name") if c not in (reader.fieldnames or [])]
    if missing:
        raise RosterError([(1, "missing_columns", {"columns": ", ".join(missing)})])
    roster = Roster()
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(_clean(v) for v in row.values() if isinstance(v, str)):
            continue
        kind = _clean(row.get("kind")).lower()
        number = _clean(row.get("number"))
        name = _clean(row.get("name"))
        before = len(problems)
        if not NUMBER_RE.match(number):
            problems.append((line, "bad_number", {"value": number}))
        elif number in seen:
            problems.append((line, "duplicate_number", {"value": number, "other": seen[number]}))
        else:
            seen[number] = line
        if not name or len(name) > MAX_NAME:
            problems.append((line, "bad_name", {"max": MAX_NAME}))
        if kind == "student":
            grade, class_name = _clean(row.get("grade")), _clean(row.get("class"))
            if not grade or not class_name:
                problems.append((line, "student_needs_class", {}))
            guardians = []
            for n in (1, 2):
                g_name = _clean(row.get(f"guardian{n}_name"))
                g_rel = _clean(row.get(f"guardian{n}_relation"))
                g_phone = _phone_tail(_clean(row.get(f"guardian{n}_phone")), line, problems)
                if g_name:
                    if not g_rel:
                        problems.append((line, "guardian_needs_relation", {"n": n}))
                    guardians.append(GuardianRow(g_name[:MAX_NAME], g_rel[:32], g_phone))
                elif n == 1:
                    problems.append((line, "student_needs_guardian", {}))
            if len(problems) == before:
                roster.students.append(StudentRow(line, grade, class_name, number, name, tuple(guardians)))
        elif kind == "person":
            roles = frozenset(r.strip().lower() for r in _clean(row.get("roles")).split(";") if r.strip())
            unknown = roles - STAFF_ROLES
            if not roles or unknown:
                problems.append((line, "bad_roles", {"roles": ";".join(sorted(STAFF_ROLES))}))
            heads = _clean(row.get("class")) or None
            if heads and Role.TEACHER.value not in roles:
                problems.append((line, "head_not_teacher", {}))
            phone = _phone_tail(_clean(row.get("phone")), line, problems)
            if len(problems) == before:
                roster.people.append(PersonRow(line, number, name, roles, phone, heads))
        else:
            problems.append((line, "bad_kind", {"value": kind}))
    class_names = {s.class_name for s in roster.students}
    for p in roster.people:
        if p.heads_class and p.heads_class not in class_names:
            problems.append((p.line, "unknown_class", {"value": p.heads_class}))
    if problems:
        raise RosterError(problems)
    return roster


async def _set_roles(session: AsyncSession, person: Person, roles: set[str], keep_parent: bool) -> None:
    existing = {
        r.role: r for r in await session.scalars(select(PersonRole).where(PersonRole.person_id == person.id))
    }
    for role in roles - existing.keys():
        session.add(PersonRole(school_id=person.school_id, person_id=person.id, role=role))
    for role, row in existing.items():
        if role not in roles and not (keep_parent and role == Role.PARENT.value):
            await session.delete(row)


async def import_roster(session: AsyncSession, school: School, roster: Roster) -> ImportReport:
    """Upsert everything in the roster into the school; the caller commits or rolls back."""
    report = ImportReport()
    classes = {
        c.name: c
        for c in await session.scalars(select(SchoolClass).where(SchoolClass.school_id == school.id))
    }
    students = {
        s.student_no: s for s in await session.scalars(select(Student).where(Student.school_id == school.id))
    }
    people = {
        p.person_no: p for p in await session.scalars(select(Person).where(Person.school_id == school.id))
    }

    async def upsert_person(number: str, name: str, phone: str | None) -> Person:
        person = people.get(number)
        if person is None:
            person = Person(school_id=school.id, person_no=number, name=name, phone_tail=phone)
            session.add(person)
            await session.flush()
            people[number] = person
            report.people_created += 1
        else:
            if (person.name, person.phone_tail) != (name, phone):
                report.people_updated += 1
            person.name, person.phone_tail = name, phone
        return person

    for row in roster.students:
        cls = classes.get(row.class_name)
        if cls is None:
            cls = SchoolClass(school_id=school.id, grade=row.grade, name=row.class_name)
            session.add(cls)
            await session.flush()
            classes[row.class_name] = cls
            report.classes_created += 1
        cls.grade = row.grade
        student = students.get(row.number)
        if student is None:
            student = Student(school_id=school.id, class_id=cls.id, student_no=row.number, name=row.name)
            session.add(student)
            await session.flush()
            students[row.number] = student
            report.students_created += 1
        else:
            if (student.name, student.class_id, student.active) != (row.name, cls.id, True):
                report.students_updated += 1
            student.name, student.class_id, student.active = row.name, cls.id, True
        for position, g in enumerate(row.guardians, start=1):
            person = await upsert_person(f"{row.number}-G{position}", g.name, g.phone_tail)
            await _set_roles(session, person, {Role.PARENT.value}, keep_parent=True)
            link = await session.scalar(
                select(Guardianship).where(
                    Guardianship.student_id == student.id, Guardianship.person_id == person.id
                )
            )
            if link is None:
                session.add(
                    Guardianship(
                        school_id=school.id,
                        student_id=student.id,
                        person_id=person.id,
                        relation=g.relation,
                        position=position,
                    )
                )
            else:
                link.relation, link.position = g.relation, position

    for member in roster.people:
        person = await upsert_person(member.number, member.name, member.phone_tail)
        await _set_roles(session, person, set(member.roles), keep_parent=True)
        if member.heads_class:
            classes[member.heads_class].head_teacher_id = person.id
    await session.flush()
    return report


ROSTER_TABLES = (SchoolClass, Student, Person, Guardianship, PersonRole)


async def refresh_statistics(session: AsyncSession) -> None:
    """Let PostgreSQL's planner see a roster just loaded (ANALYZE, after the import's commit).

    Until autovacuum next looks (a minute or more later) the planner believes the tables as small
    as before: after a first import of thousands of families, the lookups every update makes chose
    sequential scans and hash joins, 1.4 ms a lookup instead of 0.02 ms (docs/benchmarks.md,
    "Inbound updates"). SQLite's planner picks these indexes without statistics.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(text("ANALYZE " + ", ".join(t.__tablename__ for t in ROSTER_TABLES)))
