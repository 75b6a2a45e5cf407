"""Administrator operations behind the command line (and the demo): roster, terms, invites."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.dialog import Links
from storage import invites, roster, schools, terms
from storage.invites import IssuedInvite
from storage.models import Role, School, TermsVersion

DEFAULT_SCHOOL_CODE = "main"


class AdminError(Exception):
    """A problem the administrator can fix; `key` names its text in messages (`admin.<key>`)."""

    def __init__(self, key: str, **params: object) -> None:
        self.key, self.params = key, params
        super().__init__(f"{key} {params}")


async def _school_for_import(session: AsyncSession, code: str | None, name: str | None) -> School:
    if code:
        return await schools.get_or_create_school(session, code, name)
    existing = await schools.list_schools(session)
    if len(existing) == 1:
        if name:
            existing[0].name = name
        return existing[0]
    if not existing:
        return await schools.get_or_create_school(session, DEFAULT_SCHOOL_CODE, name or "学校")
    raise AdminError("several_schools")


async def _school(session: AsyncSession, code: str | None) -> School:
    try:
        return await schools.resolve_school(session, code)
    except schools.SchoolNotFound:
        raise AdminError("no_school" if code is None else "unknown_school", school=code) from None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise AdminError("no_file", path=path) from None
    except UnicodeDecodeError:
        raise AdminError("not_utf8", path=path) from None


async def import_roster_file(
    sessionmaker: async_sessionmaker[AsyncSession],
    path: Path,
    school_code: str | None = None,
    school_name: str | None = None,
) -> tuple[School, roster.ImportReport]:
    """Check the whole file first, then write it in one transaction (all or nothing)."""
    parsed = roster.parse_roster(read_text(path))  # raises RosterError with line numbers
    async with sessionmaker.begin() as session:
        school = await _school_for_import(session, school_code, school_name)
        report = await roster.import_roster(session, school, parsed)
    return school, report


async def publish_terms_file(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path, school_code: str | None = None
) -> tuple[School, TermsVersion, bool]:
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise AdminError("bad_yaml", path=path, detail=str(exc)) from None
    content = terms.parse_terms(data)  # raises pydantic.ValidationError naming each field
    async with sessionmaker.begin() as session:
        school = await _school(session, school_code)
        version, created = await terms.publish_terms(session, school, content)
    return school, version, created


@dataclass(frozen=True)
class InviteRequest:
    role: str
    student: str | None = None
    class_name: str | None = None
    person: str | None = None
    ttl_days: int = 30


async def issue_invites(
    sessionmaker: async_sessionmaker[AsyncSession],
    request: InviteRequest,
    school_code: str | None = None,
) -> list[IssuedInvite]:
    ttl = timedelta(days=request.ttl_days)
    try:
        async with sessionmaker.begin() as session:
            school = await _school(session, school_code)
            if request.role == Role.PARENT.value:
                return await invites.create_parent_invites(
                    session, school, ttl, student_no=request.student, class_name=request.class_name
                )
            if not request.person:
                raise AdminError("need_person", role=request.role)
            return [await invites.create_person_invite(session, school, request.role, request.person, ttl)]
    except invites.InviteError as exc:
        raise AdminError(exc.key, **exc.params) from None


def write_invite_qr(issued: list[IssuedInvite], links: Links, folder: Path) -> Path:
    """A printable QR image per invite and an index.csv for the slips sent home."""
    import segno

    folder.mkdir(parents=True, exist_ok=True)
    index = folder / "index.csv"
    with index.open("w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["file", "code", "link", "role", "class", "student_no", "student", "name", "relation", "expires"]
        )
        for item in issued:
            link = links.invite(item.code)
            image = folder / f"{item.person_no}.png"
            segno.make(link, error="m").save(str(image), scale=8, border=4)
            writer.writerow(
                [
                    image.name,
                    item.code,
                    link,
                    item.role,
                    item.class_name or "",
                    item.student_no or "",
                    item.student_name or "",
                    item.person_name,
                    item.relation or "",
                    item.expires_at.date().isoformat(),
                ]
            )
    return index
