"""PostgreSQL stopped and started again under the bot's feet; the bot itself keeps running.

Each test starts a PostgreSQL server of its own (initdb into a temporary directory, a free port),
never the shared one on 5432 that other tests use. While the server is down, updates get 503 on
the webhook (Telegram posts them again later) or stay unconfirmed in polling mode, the person is
told once that their message will be processed when the service is back, and the web chat hands
the message back to the page, which sends it again. Once the server is back, the engine
replaces the dead connections (storage.db pings a connection that sat idle) and every
update is processed exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import messages
from bot.config import normalise_database_url
from storage.db import create_engine, create_sessionmaker, migrate
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
    unavailable_texts,
)
from tests.parts import chromium_path, require
from tests.school import load_example_school
from tests.telegram_app import School, free_port, running_app
from tests.test_browser import LAUNCH_ARGS

pytestmark = pytest.mark.e2e

PARENTS = 30  # four updates each, all at once
FIRST_USER = 840001
OUTAGE = 2.0  # seconds the server stays down while updates keep coming


def server_binaries() -> Path | None:
    """The directory of initdb, pg_ctl and postgres: Debian's newest, else the ones on PATH."""
    versions = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if d.parent.name.isdigit()]
    for directory in sorted(versions, key=lambda d: int(d.parent.name), reverse=True):
        if all((directory / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    return None


@dataclass
class PrivatePostgres:
    """A PostgreSQL server for one test: trust authentication, 127.0.0.1 and a socket directory of
    its own. PostgreSQL refuses to run as root, so under root it runs as the `postgres` user."""

    binaries: Path
    home: Path  # the data directory, the socket and the log live here
    port: int
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def initdb(self) -> None:
        await self._run(
            "initdb", "-D", str(self.home / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        await self._pg_ctl("start", "-w", "-t", "30", "-l", str(self.home / "server.log"), "-o", options)

    async def stop(self, mode: str = "fast") -> None:
        """`fast`: running transactions are rolled back and every client is disconnected."""
        await self._pg_ctl("stop", "-w", "-m", mode)

    async def _pg_ctl(self, *args: str) -> None:
        await self._run("pg_ctl", "-D", str(self.home / "data"), *args)

    async def _run(self, program: str, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.run_as,
            str(self.binaries / program),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0, f"{program} {' '.join(args)} failed:\n{out.decode(errors='replace')}"

    def log(self) -> str:
        path = self.home / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@pytest.fixture
async def postgres() -> AsyncIterator[PrivatePostgres]:
    binaries = server_binaries()
    require(
        binaries is not None,
        "the PostgreSQL server programs (initdb, pg_ctl) are not installed: apt-get install postgresql",
    )
    assert binaries is not None
    run_as: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="afterschool-pg-"))  # short: a socket path has a length limit
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            account = None
        require(
            runuser is not None and account is not None, "running as root without runuser and a postgres user"
        )
        assert runuser is not None and account is not None
        os.chown(home, account.pw_uid, account.pw_gid)
        run_as = [runuser, "-u", "postgres", "--"]
    server = PrivatePostgres(binaries, home, free_port(), run_as)
    try:
        await server.initdb()
        await server.start()
        yield server
    finally:
        with contextlib.suppress(AssertionError):
            await server.stop("immediate")
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Database:
    url: str
    sessionmaker: async_sessionmaker[AsyncSession]


@pytest.fixture
async def school_db(postgres: PrivatePostgres) -> AsyncIterator[Database]:
    """The example school on the private server."""
    engine = create_engine(normalise_database_url(postgres.url))
    try:
        await migrate(engine)
        sessionmaker = create_sessionmaker(engine)
        await load_example_school(sessionmaker)
        yield Database(postgres.url, sessionmaker)
    finally:
        await engine.dispose()


@pytest.fixture
async def delivery_fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotApi]:
    """The fake Bot API for bot processes (tests/delivery_helpers' token)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with FakeBotApi(token=TOKEN) as api:
        yield api


def language_of(user: int) -> str:
    return "en" if user % 2 else "zh-hans"


async def test_postgres_restarted_under_load_every_update_once_and_the_bot_recovers_by_itself(
    postgres: PrivatePostgres, school_db: Database, delivery_fake: FakeBotApi, tmp_path: Path
) -> None:
    fake = delivery_fake
    users = await bind_parents(school_db.sessionmaker, FIRST_USER, PARENTS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with (
        bots(fake, school_db.url, tmp_path) as running,
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        bot = await running.start(port)
        telegram = Telegram(http, [base + WEBHOOK_PATH], retry_pause=0.2)  # Telegram backs off more
        sent: list[int] = []

        async def parent(user: int) -> None:
            sent.extend(await report_absence(telegram, fake, user, language_of(user)))

        stream = asyncio.gather(*(parent(user) for user in users))
        stack.callback(stream.cancel)  # if the test fails before the stream ends
        async with asyncio.timeout(60):
            await telegram.wait_until(lambda: len(telegram.answers) >= PARENTS)
            await postgres.stop()
            stopped_at = time.monotonic()
            # The web chat: the message comes back to the page with the notice.
            async with http.ws_connect(f"{base}/chat/ws?lang=en") as ws:
                await ws.send_json({"type": "text", "text": "/help"})
                answer = await ws.receive_json(timeout=10)
                assert answer == {
                    "type": "error",
                    "code": "unavailable",
                    "text": unavailable_texts()["en"],
                    "unsent": {"type": "text", "text": "/help", "resend": 0},
                }
                await asyncio.sleep(max(0.0, stopped_at + OUTAGE - time.monotonic()))
                assert any(a.status == 503 for a in telegram.answers), "no update met the outage"
                await postgres.start()
                restarted_at = time.monotonic()
                # The page sends it again (as chat.js does) until it is answered.
                for resend in range(1, 20):
                    await ws.send_json({"type": "text", "text": "/help", "resend": resend})
                    answer = await ws.receive_json(timeout=10)
                    if answer.get("code") != "unavailable":
                        break
                    await asyncio.sleep(0.2)
                assert answer["type"] == "reply" and "What I can do" in answer["text"], answer
            await stream

        # The same process, never restarted, answered again.
        assert bot.returncode is None, running.logs()
        assert any(a.status == 200 and a.started > restarted_at for a in telegram.answers)
        assert all(a.status in (200, 503) for a in telegram.answers), Counter(
            a.status for a in telegram.answers
        )

        # Every update took effect exactly once.
        assert len(sent) == len(set(sent)) == 4 * PARENTS
        assert sorted(await processed_ids(school_db.sessionmaker)) == sorted(sent)
        assert await absences_by_reason(school_db.sessionmaker) == Counter({reason_of(u): 1 for u in users})

        # Each person whose update was refused was told once per update (not once per 503), in
        # their language. Replies: one per update, except where the server stopped in the middle
        # of a commit that did happen (its re-delivery is skipped): at most the one in hand.
        texts = unavailable_texts()
        refused = Counter(
            user for user, _ in {(a.user, a.update_id) for a in telegram.answers if a.status == 503}
        )
        for user in users:
            notice = texts["en" if language_of(user) == "en" else "zh_CN"]
            got = fake.messages_to(user)
            assert got.count(notice) == refused[user], (user, got)
            assert len(got) - got.count(notice) in (3, 4), (user, got)
        assert sum(refused.values()) >= 1
        await running.stop_all()


async def test_polling_keeps_updates_through_an_outage_and_processes_them_once_the_server_is_back(
    postgres: PrivatePostgres, school_db: Database, fake: FakeBotApi, tmp_path: Path
) -> None:
    """Long polling: the updates that meet the outage stay unconfirmed at Telegram and are fetched
    again; their senders are told once, however often they are fetched."""
    first, second, third = await bind_parents(school_db.sessionmaker, FIRST_USER + 100, 3)
    notices = unavailable_texts()
    async with running_app(School(school_db.url, school_db.sessionmaker), fake, tmp_path):
        fake.push_text(first, "/help")
        await fake.wait_for_messages(first, 1)
        await postgres.stop()
        waiting = [fake.push_text(second, "/absent"), fake.push_text(third, "/absent", language_code="en")]
        await fake.wait_for(
            lambda: (
                fake.messages_to(second) == [notices["zh_CN"]] and fake.messages_to(third) == [notices["en"]]
            )
        )
        polls = len(fake.calls_of("getUpdates"))
        await asyncio.sleep(OUTAGE)
        assert len(fake.calls_of("getUpdates")) > polls  # fetched again meanwhile ...
        assert fake.messages_to(second) == [notices["zh_CN"]]  # ... and nobody was told twice
        assert fake.messages_to(third) == [notices["en"]]
        await postgres.start()
        await fake.wait_for(
            lambda: len(fake.messages_to(second)) == len(fake.messages_to(third)) == 2, timeout=20
        )
        assert fake.messages_to(second)[1] == messages.render("absent_ask_day", "zh_CN")
        # (Replies speak the language saved with the account; the notice could only use Telegram's.)
        assert fake.messages_to(third)[1] == messages.render("absent_ask_day", "zh_CN")
        processed = await processed_ids(school_db.sessionmaker)
        assert sorted(u["update_id"] for u in waiting) == sorted(
            set(processed) & {u["update_id"] for u in waiting}
        )
        assert len(processed) == len(set(processed)) == 3


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    require(path is not None, "Chromium not found (install chromium, or set CHROMIUM_PATH)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.mark.browser
async def test_the_chat_page_keeps_a_message_through_an_outage_and_sends_it_again(
    postgres: PrivatePostgres,
    school_db: Database,
    delivery_fake: FakeBotApi,
    chromium: Browser,
    tmp_path: Path,
) -> None:
    port = free_port()
    async with bots(delivery_fake, school_db.url, tmp_path) as running:
        await running.start(port)
        page = await (await chromium.new_context(locale="en-US")).new_page()
        page.set_default_timeout(15_000)
        await page.goto(f"http://127.0.0.1:{port}/chat")
        await expect(page.locator("#messages .msg.bot")).to_have_count(1)  # the page sent /start
        await postgres.stop()
        await page.fill("#input", "/help")
        await page.press("#input", "Enter")
        notice = page.locator("#messages .msg.error")
        await expect(notice).to_have_text(unavailable_texts()["en"])
        await page.wait_for_timeout(OUTAGE * 1000)  # it was sent again meanwhile: still one notice
        await expect(notice).to_have_count(1)
        await postgres.start()
        await expect(page.locator("#messages .msg.bot").last).to_contain_text("What I can do", timeout=20_000)
        await expect(page.locator("#messages .msg.me")).to_have_text(["/start", "/help"])
        await running.stop_all()
