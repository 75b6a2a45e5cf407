"""A notice to N parents through the real outbox sender, against the fake Bot API holding R/s.

    python -m bench.broadcast --recipients 10000 --rate 30 [--db sqlite|postgres]

What runs is what production runs: the leadership, the sender with its limiter and claims, the
Telegram adapter (python-telegram-bot over HTTP), and the database (a fresh SQLite file, or a
fresh schema on PostgreSQL from --database-url / TEST_DATABASE_URL / DATABASE_URL). The fake Bot
API (tests/fakebotapi.py) runs in a process of its own, as Telegram is on another machine, and
refuses every message over R a second with 429. Halfway through, a safety message is written by
"another process" (a plain insert, no wake-up call) and its latency measured until Telegram
accepts it (both processes read the same monotonic clock). The last line is the summary:

    broadcast recipients=N rate_limit=R achieved=X ratio=X/R 429s=K duplicates=D lost=L safety_latency_ms=T
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.channels import Channel, Delivery
from bot.config import Settings, normalise_database_url
from bot.leader import Leadership
from bot.ratelimit import Limits
from bot.sender import Sender
from bot.telegram import TelegramAdapter
from handlers.dialog import Links, Reply
from handlers.dispatch import Deps
from storage.clock import utcnow
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import Lane, Outbox, OutboxStatus, PlatformAccount
from tests.fakebotapi import FakeBotApi

TOKEN = "424242424:AAbenchmarkTokenNotARealOne_0123456789"
FIRST_CHAT = 10_000_001
SAFETY_CHAT = "999"
NOTICE = (
    "<b>阳光实验小学课后服务通知</b>\n\n各位家长：下周一（12月8日）起，课后服务时间调整为 "
    "15:40–17:30。请按时接孩子；如需请假，请在当天 12:00 前告知班主任。\n\n"
    "回复 /help 查看更多功能。 #{i}"
)


def fake_bot_api(pipe: Connection, rate: int) -> None:
    """The child process: the fake Bot API holding `rate` a second, until told to report."""

    async def serve() -> None:
        async with FakeBotApi(token=TOKEN) as fake:
            flood = fake.enforce_limits(per_second=rate)
            pipe.send(fake.url)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, pipe.recv)  # "report"
            pipe.send(([(s.chat_id, s.at) for s in fake.sent], len(flood.violations)))

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(name, None)
    asyncio.run(serve())


@contextlib.contextmanager
def telegram_elsewhere(rate: int) -> Any:
    """Start the fake Bot API process; yields (its URL, a function that collects its record)."""
    spawn = multiprocessing.get_context("spawn")
    parent, child = spawn.Pipe()
    process = spawn.Process(target=fake_bot_api, args=(child, rate), daemon=True)
    process.start()
    try:
        url = parent.recv()

        def collect() -> tuple[list[tuple[str, float]], int]:
            parent.send("report")
            sent, refused = parent.recv()
            return sent, refused

        yield url, collect
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()


class Timed:
    """The Telegram channel, noting when each answer came back (for the crash-window figures)."""

    def __init__(self, inner: TelegramAdapter) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.answered: dict[str, float] = {}

    async def deliver(self, chat_id: str, reply: Reply) -> Delivery:
        result = await self.inner.deliver(chat_id, reply)
        self.answered[chat_id] = time.monotonic()
        return result


@contextlib.asynccontextmanager
async def database(kind: str, url: str | None) -> AsyncIterator[AsyncEngine]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as folder:
            engine = create_engine(f"sqlite+aiosqlite:///{Path(folder) / 'bench.sqlite3'}")
            try:
                yield engine
            finally:
                await engine.dispose()
        return
    url = url or os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("--db postgres needs --database-url, TEST_DATABASE_URL or DATABASE_URL")
    url = normalise_database_url(url)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def prepare(sessionmaker: async_sessionmaker[AsyncSession], recipients: int) -> dict[str, int]:
    """N parents with a Telegram account each, and the notice queued to all in one transaction."""
    chats = [str(FIRST_CHAT + i) for i in range(recipients)] + [SAFETY_CHAT]
    async with sessionmaker.begin() as session:
        await session.execute(
            insert(PlatformAccount),
            [{"platform": "telegram", "external_id": c, "chat_id": c, "locale": "zh_CN"} for c in chats],
        )
        ids = dict((await session.execute(select(PlatformAccount.chat_id, PlatformAccount.id))).all())
        now = utcnow()
        await session.execute(
            insert(Outbox),
            [
                {
                    "account_id": ids[chat],
                    "lane": Lane.BULK.value,
                    "payload": Reply(NOTICE.format(i=i)).to_payload(),
                    "status": OutboxStatus.PENDING.value,
                    "attempts": 0,
                    "not_before": now,
                }
                for i, chat in enumerate(chats[:-1])
            ],
        )
    return ids


async def pending(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Outbox).where(Outbox.status == OutboxStatus.PENDING.value)
            )
            or 0
        )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token=SecretStr(TOKEN),
        telegram_bot_username="afterschool_bench_bot",
        send_rate_per_second=args.rate,
        send_concurrency=args.concurrency,
    )
    with telegram_elsewhere(args.rate) as (url, collect):
        async with database(args.db, args.database_url) as engine:
            result = await broadcast(args, settings.model_copy(update={"telegram_api_base_url": url}), engine)
        sent, refused = collect()
    return summarise(args, result, sent, refused)


async def sent_count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(Outbox).where(Outbox.status == OutboxStatus.SENT.value)
            )
            or 0
        )


async def broadcast(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
    """Queue the notice, run the leader's sender until the outbox is drained, inject the safety row."""
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    ids = await prepare(sessionmaker, args.recipients)
    links = Links("http://school.example.cn", "afterschool_bench_bot")
    deps = Deps(sessionmaker=sessionmaker, links=links)
    adapter = TelegramAdapter(settings, deps, wake=lambda: None)
    await adapter.application.initialize()
    timed = Timed(adapter)
    channels: dict[str, Channel] = {"telegram": timed}
    sender = Sender(
        sessionmaker,
        channels,
        limits={"telegram": Limits.telegram(settings)},
        concurrency=settings.send_concurrency,
        poll_interval=settings.send_poll_seconds,
        lease=settings.send_lease_seconds,
    )
    leadership = Leadership(engine, [sender], check_interval=settings.leader_check_seconds)
    started = time.monotonic()
    cpu_started = time.process_time()
    await leadership.start()
    try:
        while await sent_count(sessionmaker) < args.recipients // 2:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.05)
        # Another process records a late pickup: a safety message, written without a wake-up.
        async with sessionmaker.begin() as session:
            await session.execute(
                insert(Outbox),
                [
                    {
                        "account_id": ids[SAFETY_CHAT],
                        "lane": Lane.SAFETY.value,
                        "payload": Reply("接送提醒：曹若曦尚未被接走，请尽快联系班主任。").to_payload(),
                        "status": OutboxStatus.PENDING.value,
                        "attempts": 0,
                        "not_before": utcnow(),
                    }
                ],
            )
        written = time.monotonic()
        last_progress, last_count = time.monotonic(), -1
        while (left := await pending(sessionmaker)) > 0:
            if left != last_count:
                last_progress, last_count = time.monotonic(), left
            elif time.monotonic() - last_progress > 60:
                print(f"no progress for 60 s with {left} rows pending; stopping", file=sys.stderr)
                break
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - started
    finally:
        await leadership.stop()
        await adapter.stop()
    cpu = time.process_time() - cpu_started
    return {
        "written": written,
        "elapsed": elapsed,
        "cpu": cpu,
        "answered": timed.answered,
        "confirm": list(sender.stats.confirm_seconds),
        "sender_429s": sender.stats.rate_limited,
    }


def summarise(
    args: argparse.Namespace, run: dict[str, Any], sent: list[tuple[str, float]], refused: int
) -> dict[str, Any]:
    """The figures, from what the fake Bot API accepted (chat, when) and what the sender measured."""
    bulk = [(chat, at) for chat, at in sent if chat != SAFETY_CHAT]
    safety = [at for chat, at in sent if chat == SAFETY_CHAT]
    got = Counter(chat for chat, _ in bulk)
    expected = {str(FIRST_CHAT + i) for i in range(args.recipients)}
    times = sorted(at for _, at in bulk)
    achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    transit = [run["answered"][chat] - at for chat, at in sent if chat in run["answered"]]
    confirm = run["confirm"]
    return {
        "db": args.db,
        "recipients": args.recipients,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "achieved": achieved,
        "ratio": achieved / args.rate,
        "refused": refused,
        "sender_429s": run["sender_429s"],
        "duplicates": sum(n - 1 for n in got.values() if n > 1) + max(0, len(safety) - 1),
        "lost": len(expected - set(got)) + (0 if safety else 1),
        "safety_latency_ms": (safety[0] - run["written"]) * 1000 if safety else float("nan"),
        "elapsed": run["elapsed"],
        "cpu": run["cpu"],
        "transit_ms": [percentile(transit, q) * 1000 for q in (0.5, 0.99)] + [max(transit) * 1000],
        "confirm_ms": [percentile(confirm, q) * 1000 for q in (0.5, 0.99)] + [max(confirm) * 1000],
        "window_ms": statistics.fmean(transit) * 1000 + statistics.fmean(confirm) * 1000,
    }


def _ms(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values) + " ms"


def report(r: dict[str, Any]) -> str:
    rows = [
        ("database", r["db"]),
        ("recipients", r["recipients"]),
        ("rate limit (fake Bot API)", f"{r['rate']}/s per bot"),
        ("sends in flight at most", r["concurrency"]),
        ("achieved (first to last accepted)", f"{r['achieved']:.1f}/s"),
        ("ratio achieved / limit", f"{r['ratio']:.3f}"),
        ("refused with 429 by the fake", r["refused"]),
        ("429s the sender saw", r["sender_429s"]),
        ("duplicates", r["duplicates"]),
        ("lost", r["lost"]),
        ("safety message, written to accepted", f"{r['safety_latency_ms']:.0f} ms"),
        ("crash window: accept -> answer p50/p99/max", _ms(r["transit_ms"])),
        ("crash window: answer -> commit p50/p99/max", _ms(r["confirm_ms"])),
        ("crash window, mean total", f"{r['window_ms']:.1f} ms"),
        ("wall time (leader start to drained)", f"{r['elapsed']:.1f} s"),
        ("CPU time of the sender's process", f"{r['cpu']:.1f} s ({r['cpu'] / r['elapsed']:.0%} of one core)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    ratio = round(r["achieved"] / r["rate"], 2)
    lines.append(
        f"broadcast recipients={r['recipients']} rate_limit={r['rate']} achieved={r['achieved']:.1f} "
        f"ratio={ratio:.2f} 429s={r['refused']} duplicates={r['duplicates']} lost={r['lost']} "
        f"safety_latency_ms={r['safety_latency_ms']:.0f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=30, help="messages a second the fake Bot API allows")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--database-url", default=None, help="PostgreSQL to create a scratch schema in")
    parser.add_argument("--concurrency", type=int, default=16, help="SEND_CONCURRENCY")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        os.environ.pop(name, None)  # the fake is on 127.0.0.1
    print(f"broadcast: {args.recipients} recipients at {args.rate}/s on {args.db} ...", flush=True)
    result = asyncio.run(run(args))
    print(report(result))
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
