"""The example school (examples/roster.csv and examples/terms.yaml) loaded into a test database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import admin
from storage import consent
from storage.clock import utcnow
from storage.models import Person

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def load_example_school(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await admin.import_roster_file(
        sessionmaker, EXAMPLES / "roster.csv", school_code="sunshine", school_name="阳光实验小学"
    )
    await admin.publish_terms_file(sessionmaker, EXAMPLES / "terms.yaml")


async def parent_code(
    sessionmaker: async_sessionmaker[AsyncSession], student_no: str, *, notice_accepted: bool = False
) -> str:
    """The first guardian's invite code. `notice_accepted`: they already accepted the privacy notice
    (on another device), so the code binds at once; for tests about a channel, not about consent."""
    issued = await admin.issue_invites(sessionmaker, admin.InviteRequest(role="parent", student=student_no))
    if notice_accepted:
        await _accept_notice(sessionmaker, issued[0].person_no)
    return issued[0].code


async def person_code(
    sessionmaker: async_sessionmaker[AsyncSession],
    role: str,
    person_no: str,
    *,
    notice_accepted: bool = False,
) -> str:
    issued = await admin.issue_invites(sessionmaker, admin.InviteRequest(role=role, person=person_no))
    if notice_accepted:
        await _accept_notice(sessionmaker, person_no)
    return issued[0].code


async def _accept_notice(sessionmaker: async_sessionmaker[AsyncSession], person_no: str) -> None:
    async with sessionmaker.begin() as session:
        person_id = await session.scalar(select(Person.id).where(Person.person_no == person_no))
        assert person_id is not None, person_no
        await consent.accept(session, [person_id], None, utcnow())
