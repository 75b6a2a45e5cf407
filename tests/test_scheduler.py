"""The scheduler on each database: jobs in the persistent job store survive a restart, a run missed
while the service was down runs once within its grace period, and the event loop never waits for
the (synchronous) job store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import time_machine
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import sync_database_url
from bot.scheduler import Scheduler
from handlers.dispatch import Deps
from handlers.notices import TEXTS
from storage import notices
from storage.clock import utcnow
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import AuditLog, Notice, Outbox
from storage.notices import Audience, Draft
from storage.schools import resolve_school
from tests.notice_helpers import at, inbox, school_with_people

# The school-care checks (late pickups, offers, reminders, vetting) are jobs of their own.
CARE_JOBS = {"care:handovers", "care:housekeeping", "surveys:tick"}  # the standing jobs besides notices


async def sync_url(engine: AsyncEngine) -> str:
    """The test database for the job store's synchronous driver (the same schema on PostgreSQL)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return sync_database_url(url.render_as_string(hide_password=False))
    async with engine.connect() as conn:
        schema = await conn.scalar(text("select current_schema()"))
    url = url.set(drivername="postgresql+psycopg").update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


async def eventually(probe: Callable[[], Awaitable[Any]], expected: Any, seconds: float = 10) -> None:
    value = None
    for _ in range(int(seconds / 0.05)):
        if (value := await probe()) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still {value!r}, expected {expected!r}")


async def create(sessionmaker, now: datetime, title: str, **options: Any) -> Notice:
    async with sessionmaker.begin() as session:
        school = await resolve_school(session, None)
        draft = Draft(title, f"{title}。", Audience("class", "一年级(1)班"), **options)
        return (await notices.create_notice(session, school, draft, now, TEXTS)).notice


async def statuses(sessionmaker) -> list[tuple[int, str, int | None]]:
    async with sessionmaker() as session:
        rows = await session.execute(select(Notice.id, Notice.status, Notice.series_id).order_by(Notice.id))
        return [tuple(r) for r in rows]


async def test_a_recurring_notice_survives_a_restart(engine, sessionmaker, deps):
    people = await school_with_people(deps, sessionmaker)
    url = await sync_url(engine)
    with time_machine.travel(at(2, 10), tick=True):  # a Wednesday
        series = await create(sessionmaker, at(2, 10), "本周菜单", cron="0 16 * * fri")
        first = Scheduler(sessionmaker, url, sync_interval=3600)
        await first.start()
        try:
            jobs = await first.jobs()
            assert set(jobs) == {f"notice:{series.id}", "notices:digests", "notices:reminders", *CARE_JOBS}
            assert jobs[f"notice:{series.id}"].next_run_time == at(4, 16)
        finally:
            await first.stop()

    # Down over Friday 16:00; back at 16:20, within the grace period: the menu goes out, once.
    with time_machine.travel(at(4, 16, 20), tick=True):
        second = Scheduler(sessionmaker, url, sync_interval=3600)
        await second.start()
        try:
            await eventually(lambda: statuses(sessionmaker), [(1, "recurring", None), (2, "sent", 1)])
            assert (await second.jobs())[f"notice:{series.id}"].next_run_time == at(11, 16)
        finally:
            await second.stop()
        third = Scheduler(sessionmaker, url, sync_interval=3600)  # another restart: nothing more
        await third.start()
        await asyncio.sleep(0.3)
        await third.stop()
    assert len(await statuses(sessionmaker)) == 2
    menu = await inbox(sessionmaker, people.mother)
    assert len(menu) == 1 and "本周菜单" in menu[0].payload["text"]
    async with sessionmaker() as session:
        issue = await session.get(Notice, 2)
        assert issue is not None and issue.scheduled_for == at(4, 16)


async def test_missed_notices_run_once_within_grace_and_are_marked_missed_after(engine, sessionmaker, deps):
    await school_with_people(deps, sessionmaker)
    url = await sync_url(engine)
    with time_machine.travel(at(7, 8), tick=True):
        soon = await create(sessionmaker, at(7, 8), "九点的通知", send_at=at(7, 9))
        stale = await create(sessionmaker, at(7, 8), "早上的通知", send_at=at(7, 8, 30))
        weekly = await create(sessionmaker, at(7, 8), "每周一次", cron="0 8 * * mon")  # next: the 14th
        scheduler = Scheduler(sessionmaker, url, sync_interval=3600)
        await scheduler.start()
        await scheduler.stop()
    # Back at 14:45: 9:00 is within six hours, 8:30 is not.
    with time_machine.travel(at(7, 14, 45), tick=True):
        scheduler = Scheduler(sessionmaker, url, sync_interval=3600)
        await scheduler.start()
        try:
            await eventually(
                lambda: statuses(sessionmaker),
                [(soon.id, "sent", None), (stale.id, "missed", None), (weekly.id, "recurring", None)],
            )
            assert set(await scheduler.jobs()) == {
                f"notice:{weekly.id}",
                "notices:digests",
                "notices:reminders",
                *CARE_JOBS,
            }
        finally:
            await scheduler.stop()
    async with sessionmaker() as session:
        texts = [
            p["text"] for p in await session.scalars(select(Outbox.payload).where(Outbox.lane == "bulk"))
        ]
        assert texts and all("九点的通知" in t for t in texts)
        missed = await session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "notice.missed")
        )
        assert missed == 1


async def test_notices_stored_by_any_process_are_picked_up_and_stopped(engine, sessionmaker, deps):
    people = await school_with_people(deps, sessionmaker)
    scheduler = Scheduler(sessionmaker, await sync_url(engine), sync_interval=0.1)
    await scheduler.start()
    try:
        # Stored by a chat worker or the command line: the leader adds the job and runs it on time.
        due = await create(sessionmaker, utcnow(), "马上发送", send_at=utcnow() + timedelta(seconds=1.5))
        await eventually(
            lambda: _job_ids(scheduler),
            {f"notice:{due.id}", "notices:digests", "notices:reminders", *CARE_JOBS},
        )
        await eventually(lambda: _count_inbox(sessionmaker, people.mother), 1)
        later = await create(sessionmaker, utcnow(), "以后再说", cron="0 16 * * fri")
        await eventually(lambda: _has(scheduler, f"notice:{later.id}"), True)
        async with sessionmaker.begin() as session:
            await notices.cancel(session, later.id)
        await eventually(lambda: _has(scheduler, f"notice:{later.id}"), False)
    finally:
        await scheduler.stop()


async def test_the_event_loop_never_waits_for_the_job_store(tmp_path, links):
    """SQLite has one writer: while our own transaction holds the write lock, the job store's
    write waits on its thread, and the loop carries on (and so lets the transaction finish)."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'one-writer.sqlite3'}")
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    await school_with_people(Deps(sessionmaker, links), sessionmaker)
    scheduler = Scheduler(sessionmaker, await sync_url(engine), sync_interval=3600)
    await scheduler.start()
    try:
        notice = await create(sessionmaker, utcnow(), "定时", send_at=utcnow() + timedelta(hours=1))
        loop = asyncio.get_running_loop()
        async with sessionmaker.begin() as session:
            await session.execute(text("UPDATE school SET name = name"))  # takes the write lock
            scheduler.nudge()  # the job store now has a job to write, and must wait for the lock
            started = loop.time()
            for _ in range(10):
                await asyncio.sleep(0.03)
            assert loop.time() - started < 1.0
        await eventually(lambda: _has(scheduler, f"notice:{notice.id}"), True)
    finally:
        await scheduler.stop()
        await engine.dispose()


async def _job_ids(scheduler: Scheduler) -> set[str]:
    return set(await scheduler.jobs())


async def _has(scheduler: Scheduler, job_id: str) -> bool:
    return job_id in await scheduler.jobs()


async def _count_inbox(sessionmaker, chat) -> int:
    return len(await inbox(sessionmaker, chat))
