"""Administrator operations for enrollment behind the command line: groups, vetting, placement."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.admin import AdminError, read_text, school_for
from handlers import agreement as agreement_flow
from handlers.enrollment_views import sign_buttons, tell_guardians
from storage import agreements, enrollment, groups, terms, vetting
from storage.clock import utcnow
from storage.enrollment import Outcome
from storage.models import Agreement, Person, PlacementProposal, School, ServiceGroup, Student


def school_today(school: School) -> date:
    return utcnow().astimezone(ZoneInfo(school.timezone)).date()


async def current_term(session: AsyncSession, school: School) -> str:
    version = await terms.current_terms(session, school.id)
    if version is None:
        raise AdminError("no_terms")
    return enrollment.term_of(version)


async def import_groups_file(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path, term: str | None, school_code: str | None
) -> tuple[str, groups.GroupsReport]:
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise AdminError("bad_yaml", path=path, detail=str(exc)) from None
    spec = groups.parse_groups(data)  # pydantic.ValidationError names each field
    async with sessionmaker.begin() as session:
        school = await school_for(session, school_code)
        chosen = term or spec.term or await current_term(session, school)
        try:
            report = await groups.import_groups(session, school, chosen, spec, school_today(school))
        except groups.GroupProblem as problem:
            raise AdminError(problem.key, **problem.params) from None
    return chosen, report


@dataclass(frozen=True)
class GroupRow:
    group: ServiceGroup
    staff: list[str]
    taken: int


async def list_groups(
    sessionmaker: async_sessionmaker[AsyncSession], term: str | None, school_code: str | None
) -> tuple[str, list[GroupRow]]:
    async with sessionmaker() as session:
        school = await school_for(session, school_code)
        chosen = term or await current_term(session, school)
        found = await groups.groups_of_term(session, school.id, chosen)
        staff = await groups.staff_on_duty(session, [g.id for g in found])
        loads = await enrollment.loads(session, school.id, chosen)
    return chosen, [
        GroupRow(g, [p.name for p in staff[g.id]], max(loads.get(g.id, {}).values(), default=0))
        for g in found
    ]


async def vet_staff(
    sessionmaker: async_sessionmaker[AsyncSession],
    person_no: str,
    *,
    moral_ok: bool,
    health_ok: bool,
    qualification_ok: bool,
    checked_on: date,
    checked_by: str,
    valid_until: date,
    note: str,
    school_code: str | None,
) -> Person:
    if valid_until < checked_on:
        raise AdminError("vetting_dates")
    async with sessionmaker.begin() as session:
        school = await school_for(session, school_code)
        person = await session.scalar(
            select(Person).where(Person.school_id == school.id, Person.person_no == person_no)
        )
        if person is None:
            raise AdminError("no_person", person=person_no, school=school.code)
        await vetting.record(
            session,
            person,
            moral_ok=moral_ok,
            health_ok=health_ok,
            qualification_ok=qualification_ok,
            checked_on=checked_on,
            checked_by=checked_by,
            valid_until=valid_until,
            note=note,
        )
    return person


async def propose(
    sessionmaker: async_sessionmaker[AsyncSession], term: str | None, school_code: str | None
) -> tuple[PlacementProposal, dict[int, str]]:
    async with sessionmaker.begin() as session:
        school = await school_for(session, school_code)
        chosen = term or await current_term(session, school)
        proposal = await enrollment.propose_placement(session, school.id, chosen, [], utcnow())
        assert proposal is not None  # the command line needs no chat role
        names = {g.id: g.name for g in await groups.groups_of_term(session, school.id, chosen)}
    return proposal, names


async def confirm(sessionmaker: async_sessionmaker[AsyncSession], proposal_id: int) -> enrollment.Confirmed:
    """Apply a proposal and tell every family (placed, or waiting with their position)."""
    async with sessionmaker.begin() as session:
        result = await enrollment.confirm_proposal(session, proposal_id, [], utcnow())
        if result.outcome is Outcome.NOT_FOUND:
            raise AdminError("no_proposal", proposal=proposal_id)
        if result.outcome is Outcome.STALE:
            raise AdminError("proposal_done", proposal=proposal_id)
        for app in result.placed:
            await tell_guardians(session, app, "placed", sign_buttons(app))
        for app in result.waiting:
            await tell_guardians(session, app, "waiting")
    return result


async def verify_agreement(
    sessionmaker: async_sessionmaker[AsyncSession], agreement_id: int
) -> agreements.Verification:
    async with sessionmaker() as session:
        check = await agreements.verify(session, agreement_id)
    if check is None:
        raise AdminError("no_agreement", agreement=agreement_id)
    return check


async def export_agreements(
    sessionmaker: async_sessionmaker[AsyncSession], folder: Path, school_code: str | None, locale: str
) -> tuple[int, Path]:
    """Every signed agreement as its own HTML file, with index.csv (hash, signer, times) for the records."""
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a command-line run, nothing else waits
    index = folder / "index.csv"
    count = 0
    async with sessionmaker() as session:
        school = await school_for(session, school_code)
        rows = await session.scalars(
            select(Agreement).where(Agreement.school_id == school.id).order_by(Agreement.id)
        )
        with index.open("w", newline="", encoding="utf-8-sig") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                [
                    "id",
                    "file",
                    "student_no",
                    "signer_person_no",
                    "signed_at",
                    "terms_version_id",
                    "sha256",
                    "intact",
                    "valid_until",
                    "platform",
                ]
            )
            for row in rows:
                name, html = await agreement_flow.document(session, row, locale)
                (folder / name).write_text(html, encoding="utf-8")
                check = await agreements.verify(session, row.id)
                signer = await session.get(Person, row.signer_person_id)
                student = await session.get(Student, row.student_id)
                writer.writerow(
                    [
                        row.id,
                        name,
                        student.student_no if student else "",
                        signer.person_no if signer else "",
                        row.signed_at.isoformat(),
                        row.terms_version_id,
                        row.sha256,
                        "yes" if check and check.intact else "NO",
                        row.valid_until.isoformat() if row.valid_until else "",
                        row.platform,
                    ]
                )
                count += 1
    return count, index


@dataclass(frozen=True)
class Unsigned:
    child: str
    student_no: str
    group: str
    superseded: bool


async def unsigned(sessionmaker: async_sessionmaker[AsyncSession], school_code: str | None) -> list[Unsigned]:
    """Placed children without an agreement in force: never signed, or not signed again after new terms."""
    async with sessionmaker() as session:
        school = await school_for(session, school_code)
        found = []
        for app in await agreements.awaiting_signature(session, school.id):
            student = await session.get(Student, app.student_id)
            group = await session.get(ServiceGroup, app.group_id) if app.group_id else None
            found.append(
                Unsigned(
                    student.name if student else "",
                    student.student_no if student else "",
                    group.name if group else "",
                    await agreements.latest(session, app.id) is not None,
                )
            )
    return found
