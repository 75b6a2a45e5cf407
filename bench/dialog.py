"""The dialog core alone: CPU and SQL statements per event, for each kind of the inbound mix.

    python -m bench.dialog [--events 800] [--kinds start,help,terms,apply,handover]
                           [--db sqlite|postgres] [--database-url URL] [--profile N]

No HTTP and no Bot API: each event goes straight to `handlers.dispatch.handle` in this process,
on a database prepared as for `bench.inbound` (a SQLite file, or a PostgreSQL database of its own
from --database-url / TEST_DATABASE_URL; the example school, 10,000 bound accounts,
drafts waiting at the weekday step, children ready to be handed over). What it shows is how much
of an update's CPU is ours (flows, domain rules, SQLAlchemy, SQLite) and how many statements an
update runs; `bench.inbound` shows the whole path. --profile N prints the N functions with the
most CPU of their own (cProfile over the timed events). The last line:

    dialog events=N cpu_ms_per_event=X statements_per_event=S
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import logging
import pstats
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event

from bench.inbound import KINDS, MIX, database, prepare
from handlers.dialog import Event, Links
from handlers.dispatch import Deps, handle
from storage.db import create_engine, create_sessionmaker, migrate

WARMUP = 20  # events of each kind before timing: statement caches, templates


def events_of(
    kind: str, parents: list[int], handovers: list[tuple[int, str]], ids: Iterator[int]
) -> Callable[[], Event]:
    """A maker of fresh events of one kind (each parent's draft and each handover used once)."""
    chats = iter(parents)
    taps = iter(handovers)

    def make() -> Event:
        common: dict[str, Any] = {"update_id": next(ids), "language": "zh-hans"}
        if kind == "handover":
            chat, button = next(taps)
            return Event("telegram", str(chat), str(chat), button=button, **common)
        chat = next(chats)
        if kind == "apply":
            return Event("telegram", str(chat), str(chat), button="a:d:mon", **common)
        return Event.from_text("telegram", str(chat), str(chat), f"/{kind}", **common)

    return make


async def measure(
    kinds: list[str], events: int, db: str, url: str | None, profile: cProfile.Profile | None
) -> list[tuple[str, float, float]]:
    rows = []
    async with database(db, url) as database_url:
        engine = create_engine(database_url)
        try:
            await migrate(engine)
            sessionmaker = create_sessionmaker(engine)
            school = await prepare(sessionmaker, WARMUP + events if "handover" in kinds else 0)
            statements = 0

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def _count(*_args: Any) -> None:
                nonlocal statements
                statements += 1

            deps = Deps(sessionmaker=sessionmaker, links=Links("https://school.example.cn", "bench_bot"))
            per_kind, ids = len(school.parents) // len(kinds), itertools.count(1)
            for n, kind in enumerate(kinds):
                parents = school.parents[n * per_kind : (n + 1) * per_kind]
                make = events_of(kind, parents, school.handovers, ids)
                for _ in range(WARMUP):
                    await handle(make(), deps)
                statements, started = 0, time.process_time()
                with profile or contextlib.nullcontext():
                    for _ in range(events):
                        await handle(make(), deps)
                cpu = time.process_time() - started
                rows.append((kind, cpu / events * 1000, statements / events))
        finally:
            await engine.dispose()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dialog", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=800, help="timed events of each kind")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"of {','.join(KINDS)}")
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--database-url", help="PostgreSQL server (default TEST_DATABASE_URL)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="print the N hottest functions")
    args = p.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        p.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    if "handover" in kinds and args.events + WARMUP > 2500:
        p.error("at most 2,480 handover events fit the prepared school")
    logging.basicConfig(level=logging.WARNING)
    # Timed by CPU, not the wall clock: waits on the database are not ours to optimise.
    profile = cProfile.Profile(time.process_time) if args.profile else None
    rows = asyncio.run(measure(kinds, args.events, args.db, args.database_url, profile))
    if profile:
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    print(f"{'kind':10s} {'CPU per event':>14s} {'statements':>11s}")
    for kind, cpu, statements in rows:
        print(f"{kind:10s} {cpu:11.2f} ms {statements:11.1f}")
    # Weighted by the share of each kind in bench.inbound's mix.
    weights = {kind: MIX.count(kind) for kind, _, _ in rows}
    total = sum(weights.values())
    cpu = sum(c * weights[k] for k, c, _ in rows) / total
    statements = sum(s * weights[k] for k, _, s in rows) / total
    count = args.events * len(rows)
    print(f"dialog events={count} cpu_ms_per_event={cpu:.2f} statements_per_event={statements:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
