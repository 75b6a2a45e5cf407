"""Schools: one deployment may serve several (a district)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import School


class SchoolNotFound(LookupError):
    pass


class SeveralSchools(SchoolNotFound):
    """No code given and more than one school: the caller must say which (never guessed)."""


async def get_or_create_school(
    session: AsyncSession, code: str, name: str | None = None, timezone: str = "Asia/Shanghai"
) -> School:
    school = await session.scalar(select(School).where(School.code == code))
    if school is None:
        school = School(code=code, name=name or code, timezone=timezone)
        session.add(school)
        await session.flush()
    elif name and school.name != name:
        school.name = name
    return school


async def resolve_school(session: AsyncSession, code: str | None) -> School:
    """The school a command means: the one named, or the only one there is."""
    if code:
        school = await session.scalar(select(School).where(School.code == code))
        if school is None:
            raise SchoolNotFound(f"no school with code {code!r}")
        return school
    schools = list(await session.scalars(select(School).order_by(School.id).limit(2)))
    if len(schools) == 1:
        return schools[0]
    if not schools:
        raise SchoolNotFound("no school yet: import a roster first")
    raise SeveralSchools("several schools: name one with --school")


async def list_schools(session: AsyncSession) -> list[School]:
    return list(await session.scalars(select(School).order_by(School.id)))
