"""What the inbound crash and outage tests share: bound parents, a webhook poster that behaves like
Telegram, parents reporting an absence in three updates, and `afterschool run` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import messages
from storage import consent
from storage.clock import utcnow
from storage.models import Absence, AccountBinding, Guardianship, Person, PlatformAccount, ProcessedUpdate
from tests.delivery_helpers import subprocess_env
from tests.fakebotapi import FakeBotApi

SECRET = "inbound-Secret_0123456789"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/telegram/webhook"


async def bind_parents(
    sessionmaker: async_sessionmaker[AsyncSession], first_user_id: int, count: int
) -> list[int]:
    """Telegram accounts bound straight to the first `count` guardians (one child each in the
    example roster); returns their Telegram user ids, which are also their chat ids."""
    async with sessionmaker.begin() as session:
        people = list(
            await session.scalars(
                select(Person.id)
                .where(Person.id.in_(select(Guardianship.person_id)))
                .order_by(Person.id)
                .limit(count)
            )
        )
        assert len(people) == count, f"the example school has only {len(people)} guardians"
        users = [first_user_id + i for i in range(count)]
        for user, person_id in zip(users, people, strict=True):
            account = PlatformAccount(
                platform="telegram", external_id=str(user), chat_id=str(user), locale="zh_CN"
            )
            session.add(account)
            await session.flush()
            school_id = await session.scalar(select(Person.school_id).where(Person.id == person_id))
            assert school_id is not None
            session.add(AccountBinding(school_id=school_id, account_id=account.id, person_id=person_id))
        await consent.accept(session, people, None, utcnow())  # as if each had accepted the notice
    return users


@dataclass(frozen=True)
class Answer:
    """One POST as the poster saw it: where, which update from whom, the status (None: no answer),
    when it started and when it ended."""

    url: str
    update_id: int
    user: int
    status: int | None
    started: float
    at: float = field(default_factory=time.monotonic)


class Telegram:
    """Posts updates to webhooks the way Telegram does: an update whose POST failed or got anything
    but 200 is posted again (to the next URL, round robin) until it gets its 200."""

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], retry_pause: float = 0.05) -> None:
        self.http, self.urls, self.retry_pause = http, urls, retry_pause
        self.answers: list[Answer] = []
        self.in_flight: Counter[str] = Counter()
        self._turn = itertools.count()
        self._changed = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Until `condition()` holds; it is checked whenever a POST starts or ends."""
        while not condition():
            changed = self._changed
            await changed.wait()

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def deliver(self, update: dict[str, Any]) -> str:
        """Post until 200; returns the URL that took it."""
        start = next(self._turn)
        for attempt in itertools.count():
            url = self.urls[(start + attempt) % len(self.urls)]
            if await self.post(url, update) == 200:
                return url
            await asyncio.sleep(self.retry_pause)
        raise AssertionError("unreachable")

    async def deliver_twice_at_once(self, update: dict[str, Any]) -> None:
        """Telegram sends an update again when the answer is slow: both copies arrive together."""
        first = next(self._turn)
        await asyncio.gather(*(self._deliver_from(update, first + i) for i in range(2)))

    async def _deliver_from(self, update: dict[str, Any], start: int) -> None:
        for attempt in itertools.count():
            if await self.post(self.urls[(start + attempt) % len(self.urls)], update) == 200:
                return
            await asyncio.sleep(self.retry_pause)

    async def post(self, url: str, update: dict[str, Any]) -> int | None:
        self.in_flight[url] += 1
        self._bump()
        status: int | None = None
        started = time.monotonic()
        try:
            async with self.http.post(
                url, json=update, headers={SECRET_HEADER: SECRET}, timeout=aiohttp.ClientTimeout(total=40)
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        finally:
            self.in_flight[url] -= 1
            self.answers.append(Answer(url, int(update["update_id"]), sender_of(update), status, started))
            self._bump()
        return status

    def statuses(self) -> Counter[int | None]:
        return Counter(a.status for a in self.answers)


def sender_of(update: dict[str, Any]) -> int:
    body = update.get("message") or update.get("callback_query") or {}
    return int(body["from"]["id"])


def reason_of(user: int) -> str:
    return f"reason {user}"


async def report_absence(
    telegram: Telegram, fake: FakeBotApi, user: int, language: str = "zh-hans", *, twice: bool = False
) -> list[int]:
    """A parent reports today's absence (/absent, the "today" button, the reason) and says thanks:
    four updates, each sent once the previous one got its 200, as a person answers what they see.
    With `twice` the button arrives twice at once. Returns the update ids."""
    ids = []
    update = fake.push_text(user, "/absent", language_code=language)
    ids.append(update["update_id"])
    await telegram.deliver(update)
    update = fake.push_callback(user, "b:d:0", language_code=language)
    ids.append(update["update_id"])
    if twice:
        await telegram.deliver_twice_at_once(update)
    else:
        await telegram.deliver(update)
    update = fake.push_text(user, reason_of(user), language_code=language)
    ids.append(update["update_id"])
    await telegram.deliver(update)
    update = fake.push_text(user, f"thank you, from {user}", language_code=language)
    ids.append(update["update_id"])
    await telegram.deliver(update)
    return ids


async def processed_ids(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(
                select(ProcessedUpdate.update_id).where(ProcessedUpdate.platform == "telegram")
            )
        )


async def absences_by_reason(sessionmaker: async_sessionmaker[AsyncSession]) -> Counter[str]:
    async with sessionmaker() as session:
        rows = await session.execute(select(Absence.reason, func.count()).group_by(Absence.reason))
        return Counter({reason: int(n) for reason, n in rows})


def unavailable_texts() -> dict[str, str]:
    """The outage notice as the person sees it (no markup in it), per locale."""
    return {locale: messages.render("unavailable", locale) for locale in messages.LOCALES}


class Bots:
    """`afterschool run` processes of one test (webhook mode, the fake Bot API), logs in files."""

    def __init__(self, fake: FakeBotApi, database_url: str, tmp_path: Path) -> None:
        self.fake, self.database_url, self.tmp_path = fake, database_url, tmp_path
        self.running: list[asyncio.subprocess.Process] = []
        self._numbers = itertools.count(1)

    async def start(self, port: int) -> asyncio.subprocess.Process:
        number = next(self._numbers)
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        data_dir = self.tmp_path / f"bot-{number}"
        data_dir.mkdir()
        env = subprocess_env(
            self.fake,
            self.database_url,
            WEBHOOK_URL=url,
            WEBHOOK_SECRET=SECRET,
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=str(port),
            DATA_DIR=str(data_dir),
            SECRET_KEY="inbound-tests-shared-secret",
        )
        env.pop("PUBLIC_BASE_URL", None)
        with (self.tmp_path / f"bot-{number}.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", cwd=self.tmp_path, env=env, stdout=log, stderr=log
            )
        self.running.append(proc)
        try:
            await self.fake.wait_for(
                lambda: (
                    any(c.params.get("url") == url for c in self.fake.calls_of("setWebhook"))
                    or proc.returncode is not None
                ),
                timeout=30,
            )
        except AssertionError:
            raise AssertionError(f"bot {number} did not start:\n{self.logs()}") from None
        assert proc.returncode is None, f"bot {number} exited with {proc.returncode}:\n{self.logs()}"
        return proc

    async def kill(self, proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL

    async def stop_all(self) -> None:
        """SIGTERM to each one still running; each must stop cleanly."""
        for proc in self.running:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
                    raise AssertionError(f"a bot did not stop on SIGTERM:\n{self.logs()}") from None
                assert code == 0, self.logs()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}"
            for path in sorted(self.tmp_path.glob("bot-*.log"))
        )


@contextlib.asynccontextmanager
async def bots(fake: FakeBotApi, database_url: str, tmp_path: Path) -> AsyncIterator[Bots]:
    running = Bots(fake, database_url, tmp_path)
    try:
        yield running
    finally:
        for proc in running.running:  # a failed test: whatever is left must not outlive it
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
