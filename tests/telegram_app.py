"""The whole app (`bot.app.serve`) against the local fake Telegram Bot API: fixtures and helpers.

Registered for every test module through `pytest_plugins` in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import serve
from bot.config import Settings
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import Outbox
from tests.fakebotapi import FakeBotApi
from tests.school import load_example_school

TOKEN = "123456789:AAE2eFakeTokenOnlyForTests_xyz-0123"
SECRET = "webhook-Secret_0123456789"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@pytest.fixture
def _only_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx would route through a proxy from the environment; these tests stay on 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake(_only_localhost: None) -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(token=TOKEN) as api:
        yield api


@pytest.fixture
async def school(tmp_path: Path) -> AsyncIterator[School]:
    """The example school in a SQLite file the app will open too."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'e2e.sqlite3'}"
    engine = create_engine(url)
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    await load_example_school(sessionmaker)
    yield School(url, sessionmaker)
    await engine.dispose()


@dataclass
class School:
    database_url: str
    sessionmaker: async_sessionmaker[AsyncSession]

    async def count(self, model: Any) -> int:
        async with self.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    async def outbox_statuses(self) -> list[str]:
        async with self.sessionmaker() as session:
            return list(await session.scalars(select(Outbox.status).order_by(Outbox.id)))


async def eventually(probe: Callable[[], Awaitable[Any]], expected: Any) -> None:
    """Wait (up to 10 s) until `await probe()` equals `expected`, for effects the fake cannot see."""
    value = None
    for _ in range(500):
        if (value := await probe()) == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still {value!r}, expected {expected!r}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running_app(
    school: School, fake: FakeBotApi, tmp_path: Path, **overrides: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """`serve()` as in production, until the bot polls (or has set its webhook)."""
    values: dict[str, Any] = {
        "database_url": school.database_url,
        "data_dir": tmp_path,
        "telegram_bot_token": TOKEN,
        "telegram_api_base_url": fake.url,
        "telegram_bot_username": None,
        "webhook_url": None,
        "webhook_secret": None,
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "public_base_url": None,
        "default_locale": "zh_CN",
    }
    values.update(overrides)
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop))
    ready = "setWebhook" if settings.webhook_url else "getUpdates"
    waiting = asyncio.ensure_future(fake.wait_for(lambda: fake.calls_of(ready)))
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiting.cancel()
        task.result()  # start-up failed: show why
        raise AssertionError("serve() returned before the bot was ready")
    await waiting
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
