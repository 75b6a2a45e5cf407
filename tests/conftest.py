"""Shared fixtures: real databases (a SQLite file, and PostgreSQL when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import normalise_database_url
from handlers.dialog import Links
from handlers.dispatch import Deps
from storage.db import create_engine, create_sessionmaker, migrate
from tests.parts import postgres_url, require

pytest_plugins = ["tests.telegram_app"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


async def _postgres_engine() -> tuple[AsyncEngine, str]:
    """A fresh schema per test on the shared PostgreSQL, so tests never see each other's rows."""
    url = postgres_url()
    require(url is not None, "TEST_DATABASE_URL is not set (PostgreSQL tests need it)")
    assert url is not None
    url = normalise_database_url(url)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    await admin.dispose()
    engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
    return engine, schema


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database of each kind."""
    schema = None
    if request.param == "sqlite":
        eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}")
    else:
        eng, schema = await _postgres_engine()
    await migrate(eng)
    yield eng
    await eng.dispose()
    if schema:
        admin = create_engine(normalise_database_url(postgres_url() or ""))
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
def links() -> Links:
    return Links("http://school.test", "afterschool_test_bot")


@pytest.fixture
def deps(sessionmaker: async_sessionmaker[AsyncSession], links: Links) -> Deps:
    return Deps(sessionmaker=sessionmaker, links=links, default_locale="zh_CN")
