"""The example school (examples/roster.csv and examples/terms.yaml) loaded into a test database."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import admin

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def load_example_school(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await admin.import_roster_file(
        sessionmaker, EXAMPLES / "roster.csv", school_code="sunshine", school_name="阳光实验小学"
    )
    await admin.publish_terms_file(sessionmaker, EXAMPLES / "terms.yaml")


async def parent_code(sessionmaker: async_sessionmaker[AsyncSession], student_no: str) -> str:
    issued = await admin.issue_invites(sessionmaker, admin.InviteRequest(role="parent", student=student_no))
    return issued[0].code


async def person_code(sessionmaker: async_sessionmaker[AsyncSession], role: str, person_no: str) -> str:
    issued = await admin.issue_invites(sessionmaker, admin.InviteRequest(role=role, person=person_no))
    return issued[0].code
