"""Administrator operations behind the command line (and the demo): roster, terms, invites, notices."""

from __future__ import annotations

import csv
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.dialog import Links
from handlers.enrollment_views import sign_buttons, tell_guardians
from handlers.notices import TEXTS
from storage import agreements, invites, notices, roster, schools, surveys, terms
from storage.clock import utcnow
from storage.invites import IssuedInvite
from storage.models import Notice, Role, School, TermsVersion

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


async def school_for(session: AsyncSession, code: str | None) -> School:
    """The school a command means; a clear error when it is ambiguous or unknown."""
    try:
        return await schools.resolve_school(session, code)
    except schools.SeveralSchools:
        raise AdminError("several_schools") from None
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
    async with sessionmaker.begin() as session:
        await roster.refresh_statistics(session)
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
        school = await school_for(session, school_code)
        version, created = await terms.publish_terms(session, school, content)
        if created:
            await ask_to_sign_again(session, school, version)
    return school, version, created


async def ask_to_sign_again(session: AsyncSession, school: School, version: TermsVersion) -> int:
    """New terms that change the agreement: each affected family is asked to sign again."""

    moved = await agreements.supersede(session, school.id, version)
    until = terms.effective_date(version, school).isoformat()
    for app in moved:
        await tell_guardians(session, app, "resign_request", sign_buttons(app), until=until)
    return len(moved)


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
            school = await school_for(session, school_code)
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


# -- notices -------------------------------------------------------------------------------------

MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024  # what a bot may upload to Telegram
_UNSAFE_NAME = re.compile(r"[^\w.\-() \u3000-\u9fff]")


@dataclass(frozen=True)
class NoticeRequest:
    path: Path
    to: str
    title: str | None = None
    at: str | None = None
    cron: str | None = None
    ack_by: str | None = None
    ack_within: int | None = None
    urgent: bool = False
    attach: Path | None = None


def split_title(text: str) -> tuple[str | None, str]:
    """`# Title` on the first line is the title; the rest is the body."""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("# "):
        return lines[0][2:].strip(), "\n".join(lines[1:]).strip()
    return None, text.strip()


def store_attachment(data_dir: Path, source: Path) -> tuple[str, str]:
    """Copy a file to DATA_DIR/attachments/<random>/<name>; returns (name, path relative to DATA_DIR).

    The random folder makes the path unguessable; the web chat still checks who may download it.
    """
    if not source.is_file():
        raise AdminError("no_file", path=source)
    if source.stat().st_size > MAX_ATTACHMENT_BYTES:
        raise notices.NoticeError("attachment_too_big", path=source, max=MAX_ATTACHMENT_BYTES // 2**20)
    name = _UNSAFE_NAME.sub("_", source.name).strip(" .")[-120:] or "attachment"
    relative = Path("attachments") / secrets.token_hex(16) / name
    target = data_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return name, relative.as_posix()


async def send_notice_file(
    sessionmaker: async_sessionmaker[AsyncSession],
    data_dir: Path,
    request: NoticeRequest,
    school_code: str | None = None,
) -> tuple[School, notices.Issued]:
    """A notice from a Markdown-ish file: sent now, at a time, or on a crontab schedule."""
    title, body = split_title(read_text(request.path))
    title = request.title or title
    if not title:
        raise notices.NoticeError("no_title", path=request.path)
    async with sessionmaker.begin() as session:
        school = await school_for(session, school_code)
        draft = notices.Draft(
            title=title,
            body=body,
            audience=notices.Audience.parse(request.to),
            urgent=request.urgent,
            send_at=notices.parse_local(request.at, school) if request.at else None,
            cron=" ".join(request.cron.split()) if request.cron else None,
            ack_deadline=notices.parse_local(request.ack_by, school) if request.ack_by else None,
            ack_within_hours=request.ack_within,
        )
        now = utcnow()
        await notices.check_draft(session, school, draft, now)  # before copying any attachment
        if request.attach is not None:
            draft.attachment_name, draft.attachment_path = store_attachment(data_dir, request.attach)
        issued = await notices.create_notice(session, school, draft, now, TEXTS)
    return school, issued


async def notice_report(sessionmaker: async_sessionmaker[AsyncSession], notice_id: int) -> notices.Report:
    async with sessionmaker() as session:
        return await notices.report(session, notice_id)


async def list_notices(
    sessionmaker: async_sessionmaker[AsyncSession], school_code: str | None = None, limit: int = 30
) -> tuple[School, list[Notice]]:
    async with sessionmaker() as session:
        school = await school_for(session, school_code)
        return school, await notices.recent_for_school(session, school.id, limit)


async def cancel_notice(sessionmaker: async_sessionmaker[AsyncSession], notice_id: int) -> Notice:
    async with sessionmaker.begin() as session:
        return await notices.cancel(session, notice_id)


def write_report_csv(report: notices.Report, path: Path) -> int:
    """One row per recipient account, and one per person of the audience who has not joined."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh)
        writer.writerow(["notice", "name", "children", "roles", "status", "acknowledged_at", "reminders"])
        for row in report.rows:
            writer.writerow(
                [
                    report.notice.id,
                    " / ".join(row.names),
                    "; ".join(f"{c.student} ({c.class_name}, {c.relation})" for c in row.children),
                    ";".join(row.roles),
                    row.status,
                    notices.local(row.acked_at, report.school).isoformat(timespec="minutes")
                    if row.acked_at
                    else "",
                    row.reminders,
                ]
            )
    return len(report.rows)


# -- surveys -------------------------------------------------------------------------------------


async def schedule_survey_file(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path, school_code: str | None = None
) -> tuple[School, surveys.Survey, int]:
    """A survey from YAML (examples/survey.yaml), stored for the scheduler to open and close.
    Returns the school, the survey and how many people its audience holds today."""
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise AdminError("bad_yaml", path=path, detail=str(exc)) from None
    spec = surveys.parse_spec(data)
    async with sessionmaker.begin() as session:
        school = await school_for(session, school_code)
        survey = await surveys.schedule_survey(session, school, spec, utcnow())
        people = await surveys.audience_size(session, survey)
    return school, survey, people


async def list_surveys(
    sessionmaker: async_sessionmaker[AsyncSession], school_code: str | None = None
) -> tuple[School, list[surveys.Survey]]:
    async with sessionmaker() as session:
        school = await school_for(session, school_code)
        return school, await surveys.list_surveys(session, school.id)


async def cancel_survey(
    sessionmaker: async_sessionmaker[AsyncSession], survey_id: int, school_code: str | None = None
) -> surveys.Survey:
    async with sessionmaker.begin() as session:
        school = await school_for(session, school_code)
        return await surveys.cancel_survey(session, school.id, survey_id)
