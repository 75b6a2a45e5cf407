"""Connection pools: DB_POOL_SIZE, DB_MAX_OVERFLOW and DB_POOL_TIMEOUT size each process's
PostgreSQL pool (every worker's pool counts against the server's max_connections); SQLite keeps
SQLAlchemy's defaults."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.config import Settings, engine_options, normalise_database_url
from storage.db import create_engine
from tests.parts import postgres_url, require


def test_settings_read_the_pool_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    monkeypatch.setenv("DB_MAX_OVERFLOW", "0")
    monkeypatch.setenv("DB_POOL_TIMEOUT", "2.5")
    assert engine_options(Settings(_env_file=None)) == {  # type: ignore[call-arg]
        "pool_size": 3,
        "max_overflow": 0,
        "pool_timeout": 2.5,
    }


async def test_a_full_postgres_pool_makes_the_next_caller_wait_then_fail():
    """One connection and no overflow: a second caller waits the timeout, then gets an error
    (rather than a connection past the budget the deployment was sized for)."""
    url = postgres_url()
    require(url is not None, "TEST_DATABASE_URL is not set (PostgreSQL tests need it)")
    engine = create_engine(normalise_database_url(url or ""), pool_size=1, max_overflow=0, pool_timeout=0.3)
    try:
        assert engine.pool.size() == 1  # type: ignore[attr-defined]
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            started = asyncio.get_running_loop().time()
            with pytest.raises(PoolTimeout):
                async with engine.connect():
                    pass
            assert asyncio.get_running_loop().time() - started >= 0.25
        async with engine.connect() as again:  # given back: the next caller gets it
            assert await again.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()


async def test_sqlite_ignores_the_pool_sizes(tmp_path: Path):
    sized = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}", pool_size=1, max_overflow=0)
    plain = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.sqlite3'}")
    try:
        assert type(sized.pool) is type(plain.pool)
        assert sized.pool.size() == plain.pool.size()  # type: ignore[attr-defined]
        async with contextlib.AsyncExitStack() as stack:  # two at once: no pool of one
            for engine_conn in (sized.connect(), sized.connect()):
                conn = await stack.enter_async_context(engine_conn)
                assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await sized.dispose()
        await plain.dispose()
