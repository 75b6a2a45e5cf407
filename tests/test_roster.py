"""The school loads its roster from one CSV: all or nothing, re-imports update, phones keep 4 digits."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot import admin
from storage.models import Guardianship, Person, PersonRole, SchoolClass, Student
from storage.roster import ROSTER_TABLES, RosterError, parse_roster
from tests.school import EXAMPLES

HEADER = (
    "kind,grade,class,number,name,phone,roles,guardian1_name,guardian1_relation,guardian1_phone,"
    "guardian2_name,guardian2_relation,guardian2_phone\n"
)


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_example_roster_loads_a_small_school(sessionmaker):
    _, report = await admin.import_roster_file(sessionmaker, EXAMPLES / "roster.csv")
    assert (report.classes_created, report.students_created) == (4, 40)
    assert await count(sessionmaker, Student) == 40
    assert await count(sessionmaker, Guardianship) >= 40
    async with sessionmaker() as session:
        heads = list(await session.scalars(select(SchoolClass.head_teacher_id)))
        assert all(heads), "every example class has a head teacher"
        tails = list(await session.scalars(select(Person.phone_tail)))
        assert all(t is None or (len(t) == 4 and t.isdigit()) for t in tails)


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)  # SQLite's planner needs no statistics
async def test_postgres_planner_sees_the_imported_roster_at_once(sessionmaker):
    """Without fresh statistics, every update's lookups on a just-imported roster scanned whole tables."""
    await admin.import_roster_file(sessionmaker, EXAMPLES / "roster.csv")
    async with sessionmaker() as session:
        analysed = set(
            await session.scalars(
                text(
                    "SELECT relname FROM pg_stat_user_tables"
                    " WHERE schemaname = current_schema() AND last_analyze IS NOT NULL"
                )
            )
        )
    assert {t.__tablename__ for t in ROSTER_TABLES} <= analysed


async def test_reimport_updates_and_never_duplicates(sessionmaker, tmp_path: Path):
    await admin.import_roster_file(sessionmaker, EXAMPLES / "roster.csv")
    before = await count(sessionmaker, Person)
    text = (EXAMPLES / "roster.csv").read_text(encoding="utf-8").replace("曹若曦", "曹若汐")
    changed = tmp_path / "roster.csv"
    changed.write_text(text, encoding="utf-8")
    _, report = await admin.import_roster_file(sessionmaker, changed)
    assert (report.students_created, report.students_updated, report.people_created) == (0, 1, 0)
    assert await count(sessionmaker, Person) == before
    assert await count(sessionmaker, Student) == 40
    async with sessionmaker() as session:
        assert await session.scalar(select(Student.name).where(Student.student_no == "S2026101")) == "曹若汐"


async def test_a_bad_row_is_reported_by_line_and_nothing_is_imported(sessionmaker, tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        HEADER
        + "student,一年级,一年级(1)班,S1,王小明,,,王建国,父亲,13800001234,,,\n"
        + "student,一年级,一年级(1)班,S2,李小红,,,,,,,,\n"
        + "person,,一年级(1)班,T1,张老师,,cook,,,,,,\n",
        encoding="utf-8",
    )
    with pytest.raises(RosterError) as caught:
        await admin.import_roster_file(sessionmaker, bad)
    lines = {(line, key) for line, key, _ in caught.value.problems}
    assert (3, "student_needs_guardian") in lines
    assert (4, "bad_roles") in lines
    assert await count(sessionmaker, Student) == 0


def test_full_phone_numbers_keep_only_their_last_four_digits():
    roster = parse_roster(HEADER + "student,一年级,一(1)班,S1,王小明,,,王建国,父亲,+86 138-0000-1234,,,\n")
    assert roster.students[0].guardians[0].phone_tail == "1234"


def test_missing_header_columns_are_named():
    with pytest.raises(RosterError) as caught:
        parse_roster("kind,name\nstudent,x\n")
    assert caught.value.problems[0][1] == "missing_columns"


async def test_roles_follow_the_file(sessionmaker):
    await admin.import_roster_file(sessionmaker, EXAMPLES / "roster.csv")
    async with sessionmaker() as session:
        roles = set(
            await session.scalars(select(PersonRole.role).join(Person).where(Person.person_no == "A002"))
        )
    assert roles == {"admin", "teacher"}
