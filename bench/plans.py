"""The query plans of the hot paths on PostgreSQL, with a district-sized dataset, before and after
the indexes of migration 0006.

    python -m bench.plans [--database-url URL] [--accounts 10000] [--outbox 300000]

A fresh schema (dropped afterwards) is migrated to 0005 and filled: one school, N parents with a
Telegram account each (bound, with a child, a class and a role), conversation states, processed
update ids, and an outbox of mostly sent rows (a notice backlog held for quiet hours, a few rows
due, some claimed by another sender). Each hot path runs through the real storage function while
its SQL is captured (at the head revision: the SQL is the code's as it is now); the schema is then
taken back to 0005 and every captured statement run again under `EXPLAIN (ANALYZE, BUFFERS)` in a
transaction that is rolled back (those on tables 0005 lacks are left out). Then the schema is
migrated to the head again, analysed, and the same statements explained again. Printed: per
statement, the plan's first line(s) and the execution time, before and after (docs/deploy.md records
a run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import event, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import normalise_database_url
from storage import accounts, conversations, outbox, updates
from storage.clock import utcnow
from storage.db import alembic_config, create_engine, create_sessionmaker, migrate
from storage.models import Person, PlatformAccount, School, SchoolClass, Student

PER_CLASS = 40
OWNER = "bench-sender"
SAMPLES = 5  # EXPLAIN ANALYZE runs per statement; the median time is printed
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
# The claim as it was read before 0006 (oldest first): the "before" plans explain that query.
BEFORE_0006 = ("ORDER BY outbox.not_before, outbox.id", "ORDER BY outbox.id")


@dataclass
class Captured:
    statement: str
    parameters: Any


@dataclass
class Path:
    name: str
    run: Callable[[AsyncSession], Awaitable[object]]
    statements: list[Captured] = field(default_factory=list)


async def fill(maker: async_sessionmaker[AsyncSession], engine: AsyncEngine, n: int, rows: int) -> None:
    """The dataset. People by the ORM's bulk insert; the outbox and update ids by generate_series."""
    async with maker.begin() as session:
        school = School(code="district", name="区实验小学")
        session.add(school)
        await session.flush()
        classes = [
            {"school_id": school.id, "grade": f"{c // 10 + 1}年级", "name": f"班{c:04d}"}
            for c in range(n // PER_CLASS + 1)
        ]
        await session.execute(insert(SchoolClass), classes)
        class_ids = list(await session.scalars(select(SchoolClass.id).order_by(SchoolClass.id)))
        await session.execute(
            insert(Student),
            [
                {
                    "school_id": school.id,
                    "class_id": class_ids[i // PER_CLASS],
                    "student_no": f"S{i:07d}",
                    "name": f"学生{i}",
                    "active": True,
                }
                for i in range(n)
            ],
        )
        await session.execute(
            insert(Person),
            [{"school_id": school.id, "person_no": f"S{i:07d}-G1", "name": f"家长{i}"} for i in range(n)],
        )
        await session.execute(
            insert(PlatformAccount),
            [
                {"platform": "telegram", "external_id": str(10_000_000 + i), "chat_id": str(10_000_000 + i)}
                | {"locale": "zh_CN"}
                for i in range(n)
            ],
        )
    async with engine.begin() as conn:
        for sql in (
            """INSERT INTO guardianship (school_id, student_id, person_id, relation, position)
               SELECT s.school_id, s.id, p.id, '母亲', 1 FROM student s
               JOIN person p ON p.person_no = s.student_no || '-G1'""",
            """INSERT INTO person_role (school_id, person_id, role)
               SELECT school_id, id, 'parent' FROM person""",
            """INSERT INTO account_binding (school_id, account_id, person_id)
               SELECT p.school_id, a.id, p.id FROM person p JOIN platform_account a
               ON a.external_id = (10000000 + substr(p.person_no, 2, 7)::int)::text""",
            """INSERT INTO conversation_state (account_id, flow, step, data)
               SELECT id, 'apply', 'days', '{}' FROM platform_account WHERE id % 10 = 0""",
            f"""INSERT INTO processed_update (platform, update_id, processed_at)
               SELECT 'telegram', g, now() - (({rows} - g) || ' seconds')::interval
               FROM generate_series(1, {rows}) g""",
            # Mostly sent; a notice backlog of 5% held for quiet hours; 1% due; 0.2% claimed elsewhere.
            f"""INSERT INTO outbox (school_id, account_id, lane, payload, status, attempts, not_before,
                                   sent_at, claimed_by, claimed_until)
               SELECT 1, 1 + g % {n}, CASE WHEN g % 20 = 0 THEN 'interactive' ELSE 'bulk' END,
                      '{{"text": "课后服务通知", "buttons": []}}',
                      CASE WHEN g > {rows} * 0.93 THEN 'pending' ELSE 'sent' END, 0,
                      CASE WHEN g > {rows} * 0.99 THEN now() - interval '1 minute'
                           WHEN g > {rows} * 0.93 THEN now() + interval '10 hours'
                           ELSE now() - interval '1 day' END,
                      CASE WHEN g > {rows} * 0.93 THEN NULL ELSE now() - interval '1 day' END,
                      CASE WHEN g > {rows} * 0.998 THEN 'other-sender' END,
                      CASE WHEN g > {rows} * 0.998 THEN now() + interval '1 hour' END
               FROM generate_series(1, {rows}) g""",
        ):
            await conn.execute(text(sql))


def hot_paths(n: int) -> list[Path]:
    """What every inbound update and every sender pass does, through the real storage functions.

    `open_account` is what an update runs (the account locked, then its state and people, then what
    they are); find_account, load_identity and get_state are its parts as other callers use them."""
    external = str(10_000_000 + n // 2)

    async def account(session: AsyncSession) -> object:
        return await accounts.find_account(session, "telegram", external)

    async def identity(session: AsyncSession) -> object:
        found = await accounts.find_account(session, "telegram", external)
        assert found is not None
        return await accounts.load_identity(session, found)

    async def opened(session: AsyncSession) -> object:
        return await accounts.open_account(session, "telegram", external, external, "zh_CN")

    async def state_get(session: AsyncSession) -> object:
        return await conversations.get_state(session, n // 2)

    async def state_set(session: AsyncSession) -> object:
        return await conversations.set_state(session, n // 2 + 1, "apply", "extras", {"days": ["mon"]})

    async def update_id(session: AsyncSession) -> object:
        return await updates.claim_update(session, "telegram", 10**9)

    def claim(lane: str) -> Callable[[AsyncSession], Awaitable[object]]:
        async def run(session: AsyncSession) -> object:
            return await outbox.claim(
                session, OWNER, lanes=[lane], platforms=["telegram"], limit=64, lease=10
            )

        return run

    async def renew(session: AsyncSession) -> object:
        return await outbox.renew(session, OWNER, 10)

    return [
        Path("find_account", account),
        Path("load_identity", identity),
        Path("open_account", opened),
        Path("get_state", state_get),
        Path("set_state", state_set),
        Path("claim_update", update_id),
        *(Path(f"outbox.claim {lane}", claim(lane)) for lane in ("safety", "interactive", "bulk")),
        Path("outbox.renew", renew),
    ]


async def capture(engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], paths: list[Path]) -> None:
    """Run each path once, rolled back, noting the SQL it sent."""
    current: list[Captured] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        current.append(Captured(statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        for path in paths:
            current.clear()
            async with maker() as session:
                await path.run(session)
                await session.rollback()
            path.statements = [c for c in current if c.statement.lstrip().upper().startswith(DML)]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def explain(engine: AsyncEngine, captured: Captured) -> tuple[list[str], float]:
    """The plan (EXPLAIN ANALYZE, BUFFERS) and the median execution time in ms, rolled back."""
    times, plan = [], []
    for _ in range(SAMPLES):
        async with engine.connect() as conn:
            result = await conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + captured.statement, tuple(captured.parameters or ())
            )
            plan = [row[0] for row in result]
            await conn.rollback()
        times.append(float(next(line for line in plan if line.startswith("Execution Time")).split()[2]))
    return plan, statistics.median(times)


def key_lines(plan: list[str]) -> list[str]:
    """The nodes of a plan, without timing detail: what to compare before and after."""
    wanted = ("->", "Index Cond", "Filter", "Rows Removed", "Sort Method", "Recheck")
    nodes = [line for line in plan if any(w in line for w in wanted) or not line.startswith(" ")]
    shown = [line.split("  (")[0].rstrip() for line in nodes]
    return [line for line in shown if not line.startswith(("Planning", "Execution"))][:12]


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    def run(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def report(
    engine: AsyncEngine, paths: list[Path], label: str, *, before: bool = False
) -> dict[tuple[str, int], float]:
    timings = {}
    print(f"\n== {label} ==")
    for path in paths:
        for number, captured in enumerate(path.statements, start=1):
            if before:
                captured = Captured(captured.statement.replace(*BEFORE_0006), captured.parameters)
            try:
                plan, ms = await explain(engine, captured)
            except ProgrammingError as exc:  # a table the older schema does not have yet
                print(f"\n{path.name} #{number}: not at this revision ({exc.orig})")
                continue
            timings[path.name, number] = ms
            print(f"\n{path.name} #{number}: {ms:.3f} ms   {' '.join(captured.statement.split())[:150]}")
            for line in key_lines(plan):
                print(f"    {line}")
            buffers = [line.strip() for line in plan if "Buffers:" in line][:1]
            if buffers:
                print(f"    ({buffers[0]})")
    return timings


async def main(args: argparse.Namespace) -> None:
    url = args.database_url or os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("needs --database-url, TEST_DATABASE_URL or DATABASE_URL (PostgreSQL)")
    url = normalise_database_url(url)
    schema = f"plans_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        await migrate(engine, args.before)
        maker = create_sessionmaker(engine)
        started = utcnow()
        await fill(maker, engine, args.accounts, args.outbox)
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        seconds = (utcnow() - started) / timedelta(seconds=1)
        print(f"filled in {seconds:.1f} s: {args.accounts} accounts, {args.outbox} outbox rows")
        # The statements are the code's as it is (at head); the "before" plans are of the same
        # statements on the older schema, where those on tables it lacks are left out.
        await migrate(engine, "head")
        paths = hot_paths(args.accounts)
        await capture(engine, maker, paths)
        await downgrade(engine, args.before)
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        before = await report(engine, paths, f"at {args.before}", before=args.before < "0006")
        await migrate(engine, "head")
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))
        after = await report(engine, paths, "at head")
        print("\n| statement | before ms | after ms |\n|---|---|---|")
        for key, ms in after.items():
            was = f"{before[key]:.3f}" if key in before else "-"
            print(f"| {key[0]} #{key[1]} | {was} | {ms:.3f} |")
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.plans", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--outbox", type=int, default=300_000)
    parser.add_argument("--before", default="0005", help="the revision to explain first (default 0005)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
