"""The demo: the example school in a local SQLite file, the web chat with a persona picker, no token.

`afterschool demo` calls `run_demo`; tests call `prepare_demo` and `list_personas` on their own
database so they exercise the same loading and the same picker the visitor sees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import messages
from bot import admin, enrollment_admin
from bot.config import Settings
from storage import directory, notices, schools, surveys
from storage.clock import utcnow
from storage.db import create_engine, create_sessionmaker, migrate

log = logging.getLogger(__name__)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_SCHOOL_CODE = "sunshine"
DEMO_SCHOOL_NAME = "阳光实验小学"  # sample data, as in examples/roster.csv
STUDENTS_PER_CLASS = 2  # whose guardians the picker offers: enough to try, short enough to read
GROUPS = directory.GROUPS


@dataclass(frozen=True)
class Persona:
    """Someone a demo visitor may pretend to be."""

    person_id: int
    group: str
    label: str


async def prepare_demo(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """Load examples/roster.csv and examples/terms.yaml unless a school exists; True when loaded.

    Loading only into an empty database keeps a visitor's demo data across restarts.
    """
    async with sessionmaker() as session:
        if await schools.list_schools(session):
            return False
    await admin.import_roster_file(
        sessionmaker, EXAMPLES / "roster.csv", school_code=DEMO_SCHOOL_CODE, school_name=DEMO_SCHOOL_NAME
    )
    await admin.publish_terms_file(sessionmaker, EXAMPLES / "terms.yaml", school_code=DEMO_SCHOOL_CODE)
    await _vet_and_group(sessionmaker)
    await _sample_survey(sessionmaker)
    return True


async def _sample_survey(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """examples/survey.yaml, open from now for a week, so /survey and /dashboard have something."""
    data = yaml.safe_load((EXAMPLES / "survey.yaml").read_text(encoding="utf-8"))
    now = utcnow()
    async with sessionmaker.begin() as session:
        school = await admin.school_for(session, DEMO_SCHOOL_CODE)
        data["opens"] = notices.local(now, school).strftime("%Y-%m-%d %H:%M")
        data["closes"] = notices.local(now + timedelta(days=7), school).strftime("%Y-%m-%d %H:%M")
        await surveys.schedule_survey(session, school, surveys.parse_spec(data), now)


async def _vet_and_group(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Sample vetting for the staff examples/groups.yaml puts on duty, then the groups themselves,
    so /groups, /place and /today have something to show."""
    spec = yaml.safe_load((EXAMPLES / "groups.yaml").read_text(encoding="utf-8"))
    today = date.today()
    for number in sorted({n for g in spec["groups"] for n in g.get("staff", [])}):
        await enrollment_admin.vet_staff(
            sessionmaker,
            number,
            moral_ok=True,
            health_ok=True,
            qualification_ok=True,
            checked_on=today - timedelta(days=30),
            checked_by=DEMO_SCHOOL_NAME,
            valid_until=today + timedelta(days=365),
            note="demo",
            school_code=DEMO_SCHOOL_CODE,
        )
    await enrollment_admin.import_groups_file(sessionmaker, EXAMPLES / "groups.yaml", None, DEMO_SCHOOL_CODE)


async def list_personas(session: AsyncSession, locale: str) -> list[Persona]:
    """Admins, committee members, head teachers, staff, and the guardians of each class's first pupils."""
    found: dict[int, Persona] = {}
    for entry in await directory.people_to_try(session, STUDENTS_PER_CLASS):
        if entry.person_id in found:
            continue  # a person shows once, in the first group that fits
        if entry.group == "head_teacher":
            label = messages.format_label(
                "web.persona_head_teacher", locale, name=entry.name, class_name=entry.class_name
            )
        elif entry.group == "parent":
            label = messages.format_label(
                "web.persona_guardian",
                locale,
                name=entry.name,
                relation=entry.relation,
                student=entry.student,
                class_name=entry.class_name,
            )
        else:
            role = messages.label(f"role.{entry.group}", locale)
            label = messages.format_label("web.persona_role", locale, name=entry.name, role=role)
        found[entry.person_id] = Persona(entry.person_id, entry.group, label)
    return list(found.values())


async def run_demo(settings: Settings) -> None:
    """Migrate, load the example school into settings.data_dir when empty, and serve in demo mode."""
    from bot.app import serve

    # Sample data lives in its own SQLite file in data_dir and never reaches real Telegram users,
    # whatever the environment says.
    settings = settings.model_copy(update={"database_url": None, "telegram_bot_token": None})
    engine = create_engine(settings.resolved_database_url())
    try:
        await migrate(engine)
        loaded = await prepare_demo(create_sessionmaker(engine))
    finally:
        await engine.dispose()
    log.info(
        "demo: %s the example school in %s; open %s/chat",
        "loaded" if loaded else "kept",
        settings.data_dir,
        settings.base_url(),
    )
    await serve(settings, demo=True)
