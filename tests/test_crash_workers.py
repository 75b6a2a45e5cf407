"""Two bot processes share the webhook traffic; one is killed with SIGKILL in the middle of it.

Telegram's side is played by the test: every update is posted until some worker answers 200, so
the updates the dead worker had in hand (maybe committed, maybe not) go to the survivor. The
update id is committed with the update's effects, so each update takes effect exactly once:
either the dead worker committed it and the survivor skips it, or nothing of it survived and the
survivor processes it. A few updates also arrive twice at once, as when Telegram re-delivers an
update whose answer was slow.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.delivery_helpers import TOKEN
from tests.fakebotapi import FakeBotApi
from tests.inbound_helpers import (
    WEBHOOK_PATH,
    Telegram,
    absences_by_reason,
    bind_parents,
    bots,
    processed_ids,
    reason_of,
    report_absence,
)
from tests.school import load_example_school
from tests.telegram_app import free_port
from tests.test_delivery_crash import Database, open_database

pytestmark = pytest.mark.e2e

PARENTS = 75  # four updates each: 300 updates, and every tenth parent's button twice at once
STEPS = 4
FIRST_USER = 830001
AT_ONCE = 16  # parents typing at the same time


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(request.param, tmp_path) as db:
        await load_example_school(db.sessionmaker)
        yield db


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotApi]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with FakeBotApi(token=TOKEN) as api:
        yield api


async def test_a_worker_killed_mid_stream_loses_and_doubles_nothing(
    database: Database, fake: FakeBotApi, tmp_path: Path
) -> None:
    users = await bind_parents(database.sessionmaker, FIRST_USER, PARENTS)
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}{WEBHOOK_PATH}" for port in ports]
    async with bots(fake, database.url, tmp_path) as running, aiohttp.ClientSession() as http:
        one, two = await asyncio.gather(running.start(ports[0]), running.start(ports[1]))
        telegram = Telegram(http, urls)
        sent: list[int] = []
        gate = asyncio.Semaphore(AT_ONCE)

        async def parent(user: int) -> None:
            async with gate:
                sent.extend(await report_absence(telegram, fake, user, twice=user % 10 == 0))

        async def kill_mid_stream() -> tuple[float, int]:
            """SIGKILL the first worker once a third is through, while it has updates in hand."""
            await telegram.wait_until(
                lambda: len(telegram.answers) >= PARENTS and telegram.in_flight[urls[0]] >= 2
            )
            in_hand = telegram.in_flight[urls[0]]
            await running.kill(one)
            return time.monotonic(), in_hand

        killer = asyncio.create_task(kill_mid_stream())
        async with asyncio.timeout(90):
            await asyncio.gather(*(parent(user) for user in users))
        assert killer.done(), "the stream ended before the kill"
        killed_at, in_hand = killer.result()

        # The survivor kept answering, and took everything after the kill.
        assert two.returncode is None, running.logs()
        after = [a for a in telegram.answers if a.started > killed_at]
        assert {a.url for a in after if a.status == 200} == {urls[1]}
        assert sum(1 for a in after if a.status == 200) > PARENTS
        assert any(a.url == urls[0] and a.status is None for a in telegram.answers), "no post was cut off"

        # Every update took effect exactly once.
        assert len(sent) == len(set(sent)) == STEPS * PARENTS
        processed = await processed_ids(database.sessionmaker)
        assert sorted(processed) == sorted(sent)
        assert await absences_by_reason(database.sessionmaker) == Counter({reason_of(u): 1 for u in users})
        # Replies: none doubled; only updates the dead worker had in hand may have lost theirs
        # (committed, then killed before the reply went out; the re-delivery is skipped).
        replies = Counter(s.chat_id for s in fake.sent)
        assert max(replies.values()) <= STEPS, running.logs()
        assert sum(STEPS - replies[str(u)] for u in users) <= in_hand
        await running.stop_all()
