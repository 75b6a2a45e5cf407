"""What the delivery tests share: recipients and outbox rows in bulk, a delivery-only Telegram
channel against the fake Bot API, a running sender, and counting what each chat received."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Channel
from bot.config import Settings
from bot.ratelimit import Limits
from bot.sender import Sender
from bot.telegram import TelegramAdapter
from handlers.dialog import Links, Reply
from handlers.dispatch import Deps
from storage.clock import utcnow
from storage.models import Lane, Outbox, OutboxStatus, PlatformAccount
from tests.fakebotapi import FakeBotApi

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "555000111:AAdeliveryTokenForTests_abcdefghij"


async def add_accounts(
    sessionmaker: async_sessionmaker[AsyncSession], chat_ids: Iterable[int | str], platform: str = "telegram"
) -> dict[str, int]:
    """One platform account per chat; returns chat id -> account id."""
    chats = [str(c) for c in chat_ids]
    async with sessionmaker.begin() as session:
        await session.execute(
            insert(PlatformAccount),
            [{"platform": platform, "external_id": c, "chat_id": c, "locale": "zh_CN"} for c in chats],
        )
        rows = await session.execute(
            select(PlatformAccount.chat_id, PlatformAccount.id).where(
                PlatformAccount.platform == platform, PlatformAccount.chat_id.in_(chats)
            )
        )
        return {chat: account_id for chat, account_id in rows}


async def queue(
    sessionmaker: async_sessionmaker[AsyncSession],
    account_ids: Iterable[int],
    lane: Lane = Lane.BULK,
    text: str = "通知：明天下午课后服务照常进行。",
) -> int:
    """One row per account, all in one transaction, as a notice to a whole school is written."""
    now = utcnow()
    values = [
        {
            "account_id": account_id,
            "lane": lane.value,
            "payload": Reply(f"{text} #{i}").to_payload(),
            "status": OutboxStatus.PENDING.value,
            "attempts": 0,
            "not_before": now,
        }
        for i, account_id in enumerate(account_ids)
    ]
    async with sessionmaker.begin() as session:
        await session.execute(insert(Outbox), values)
    return len(values)


async def count_by_status(sessionmaker: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with sessionmaker() as session:
        rows = await session.execute(select(Outbox.status, func.count()).group_by(Outbox.status))
        return Counter({status: int(n) for status, n in rows})


async def eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    """Poll `probe` until it returns something truthy (effects only the database shows)."""
    value = None
    async with asyncio.timeout(timeout):
        while not (value := await probe()):  # noqa: ASYNC110 - a commit elsewhere sets no Event here
            await asyncio.sleep(0.02)
    return value


def received(fake: FakeBotApi) -> Counter[str]:
    """How many messages each chat got."""
    return Counter(s.chat_id for s in fake.sent)


def settings_for(fake: FakeBotApi, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": None,
        "data_dir": tmp_path,
        "telegram_bot_token": TOKEN,
        "telegram_api_base_url": fake.url,
        "telegram_bot_username": "afterschool_test_bot",
        "webhook_url": None,
        "webhook_secret": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def telegram_channel(
    fake: FakeBotApi, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> AsyncIterator[TelegramAdapter]:
    """The real Telegram adapter, used to deliver only (as `afterschool sender` does)."""
    deps = Deps(sessionmaker=sessionmaker, links=Links("http://school.test", "afterschool_test_bot"))
    adapter = TelegramAdapter(settings_for(fake, tmp_path), deps, wake=lambda: None)
    await adapter.application.initialize()
    try:
        yield adapter
    finally:
        await adapter.stop()


@contextlib.asynccontextmanager
async def running_sender(
    sessionmaker: async_sessionmaker[AsyncSession],
    channels: Mapping[str, Channel],
    limits: Limits,
    **options: Any,
) -> AsyncIterator[Sender]:
    options.setdefault("retry_base", 0.05)
    sender = Sender(sessionmaker, dict(channels), limits={"telegram": limits}, **options)
    await sender.start()
    try:
        yield sender
    finally:
        await sender.stop()


@contextlib.asynccontextmanager
async def telegram_sender(
    fake: FakeBotApi,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    limits: Limits,
    **options: Any,
) -> AsyncIterator[Sender]:
    """A running sender with the real Telegram channel pointed at the fake."""
    async with (
        telegram_channel(fake, sessionmaker, tmp_path) as telegram,
        running_sender(sessionmaker, {"telegram": telegram}, limits, **options) as sender,
    ):
        yield sender


def subprocess_env(fake: FakeBotApi, database_url: str, **extra: str) -> dict[str, str]:
    """The environment for `python -m bot sender`: this checkout's code, the fake, short timings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "WEBHOOK_", "DATABASE_URL", "SEND_", "LEADER_"))
        and "proxy" not in k.lower()
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=fake.url,
        TELEGRAM_BOT_USERNAME="afterschool_test_bot",
        LOG_LEVEL="INFO",
        SEND_LEASE_SECONDS="1.5",
        SEND_POLL_SECONDS="0.1",
        LEADER_CHECK_SECONDS="0.2",
    )
    env.update(extra)
    return env


async def start_sender_process(env: dict[str, str], cwd: Path, log_path: Path) -> asyncio.subprocess.Process:
    """`python -m bot sender` as a real process, its log in a file (read it when a test fails)."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "sender", cwd=cwd, env=env, stdout=log, stderr=log
        )
