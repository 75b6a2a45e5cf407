"""Leader election: one process runs the leader duties, another takes over when it is gone.

Two `Leadership`s in this process stand for two processes (a lock file and a PostgreSQL session
are per open file / per connection, not per process). The real-process story, with SIGKILL, is
in test_delivery_crash.py.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import normalise_database_url
from bot.leader import LOCK_CLASS, Leadership
from storage.db import create_engine
from tests.parts import postgres_url, require

INTERVAL = 0.2


class Log:
    """What the duties did, in order, across both processes."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def duty(self, name: str) -> Recorder:
        return Recorder(name, self)

    def leading(self) -> list[str]:
        """Who is running their duties now (never more than one)."""
        running: list[str] = []
        for event in self.events:
            action, name = event.split(" ")
            if action == "start":
                running.append(name)
            else:
                running.remove(name)
        return running


class Recorder:
    """A leader duty that notes when it starts and stops."""

    def __init__(self, name: str, log: Log) -> None:
        self.name, self.log = name, log

    async def start(self) -> None:
        self.log.events.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.events.append(f"stop {self.name}")


async def until(condition, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the duties run in this loop; nothing to wait on
            await asyncio.sleep(0.01)


async def test_on_sqlite_one_process_leads_and_the_other_takes_over_when_it_stops(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'school.sqlite3'}"
    first_engine, second_engine = create_engine(url), create_engine(url)
    log = Log()
    first = Leadership(first_engine, [log.duty("A")], check_interval=INTERVAL)
    second = Leadership(second_engine, [log.duty("B")], check_interval=INTERVAL)
    try:
        await first.start()
        await second.start()
        assert (first.is_leader, second.is_leader) == (True, False)
        await asyncio.sleep(3 * INTERVAL)
        assert log.leading() == ["A"]  # B keeps standing by

        await first.stop()  # A shuts down (or dies: the kernel drops its lock just the same)
        await until(lambda: second.is_leader)
        assert log.events == ["start A", "stop A", "start B"]
    finally:
        await second.stop()
        await first.stop()
        await first_engine.dispose()
        await second_engine.dispose()
    assert log.leading() == []
    assert (tmp_path / "school.sqlite3.leader").exists()


def in_schema(url: str, schema: str) -> AsyncEngine:
    return create_engine(url, connect_args={"server_settings": {"search_path": schema}})


@pytest.fixture
async def postgres_schema():
    """A schema of its own on the test PostgreSQL: the lock is keyed by it."""
    url = postgres_url()
    require(url is not None, "TEST_DATABASE_URL is not set (PostgreSQL tests need it)")
    assert url is not None
    url = normalise_database_url(url)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema, admin
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def test_on_postgres_the_leader_that_loses_its_connection_stops_and_the_standby_takes_over(
    postgres_schema,
):
    url, schema, admin = postgres_schema
    engines = [in_schema(url, schema) for _ in "AB"]
    log = Log()
    first = Leadership(engines[0], [log.duty("A")], check_interval=INTERVAL)
    second = Leadership(engines[1], [log.duty("B")], check_interval=INTERVAL)
    try:
        await first.start()
        await until(lambda: first.is_leader)
        await second.start()
        await asyncio.sleep(3 * INTERVAL)
        assert log.leading() == ["A"] and not second.is_leader

        # The server ends A's session (a restart, a failover, an administrator): A's lock is gone.
        async with admin.begin() as conn:
            key = int(await conn.scalar(text("SELECT hashtext(:s)"), {"s": schema}) or 0)
            ended = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND classid = :a AND objid = :b AND granted"
                ),
                {"a": LOCK_CLASS, "b": key % 2**32},  # this test's lock only: not other runs'
            )
        assert ended == 1
        await until(lambda: second.is_leader)
        # A noticed and stopped before B started: never two leaders at once.
        assert log.events == ["start A", "stop A", "start B"]
        await asyncio.sleep(3 * INTERVAL)
        assert log.leading() == ["B"] and not first.is_leader  # A came back as the standby
    finally:
        await second.stop()
        await first.stop()
        for engine in engines:
            await engine.dispose()
    assert log.leading() == []


async def test_on_postgres_each_schema_has_its_own_leader(postgres_schema):
    url, schema, admin = postgres_schema
    other = f"t_{uuid.uuid4().hex[:12]}"
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{other}"'))
    engines = [in_schema(url, name) for name in (schema, other)]
    log = Log()
    leaders = [Leadership(engines[0], [log.duty("A")]), Leadership(engines[1], [log.duty("B")])]
    try:
        for leader in leaders:
            await leader.start()
        await until(lambda: all(leader.is_leader for leader in leaders))
        assert sorted(log.leading()) == ["A", "B"]
    finally:
        for leader in leaders:
            await leader.stop()
        for engine in engines:
            await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{other}" CASCADE'))
