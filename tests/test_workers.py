"""`afterschool run --workers 2` as a real process tree: a supervisor and two workers on one port.

Both workers take webhook posts (the kernel spreads connections over them: each one's CPU time
shows it worked), a worker killed with SIGKILL is restarted by the supervisor while the other
keeps answering, and SIGTERM to the supervisor stops every process cleanly. A worker told to stop
finishes the update in hand (its reply, then its 200) before it lets go of Telegram, and several
workers without a webhook are refused: long polling has one consumer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.app import serve
from bot.config import Settings
from tests.delivery_helpers import TOKEN
from tests.fakebotapi import FakeBotApi
from tests.school import load_example_school
from tests.test_delivery_crash import Database, open_database

pytestmark = pytest.mark.e2e

SECRET = "workers-Secret_0123456789"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@pytest.fixture(params=["sqlite", "postgres"])
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(tmp_path: Path, **values: str) -> dict[str, str]:
    """This checkout's code and nothing of the caller's bot settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELEGRAM_", "WEBHOOK_", "DATABASE_URL", "SEND_", "LEADER_", "HTTP_"))
        and "proxy" not in k.lower()
    }
    env.update(PYTHONPATH=str(Path(__file__).resolve().parent.parent), DATA_DIR=str(tmp_path / "data"))
    env.update(values)
    return env


def children_of(pid: int) -> set[int]:
    """Child processes of `pid`, from /proc (zombies not counted)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry))
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def exists(pid: int) -> bool:
    """Still in /proc: running, or a zombie not yet reaped (whose other threads may hold sockets)."""
    return Path(f"/proc/{pid}").exists()


async def until(probe: Any, timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    """Poll `probe` (processes and other programs' state: nothing to wait on) until it is truthy."""
    async with asyncio.timeout(timeout):
        while not (value := probe()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return value


async def post_updates(fake: FakeBotApi, url: str, chats: range) -> list[int]:
    """One `/terms` per chat, each on a new connection (so the kernel picks a worker each time)."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    limit = asyncio.Semaphore(8)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(chat: int) -> int:
            async with limit, http.post(url, json=fake.push_text(chat, "/terms"), headers=headers) as answer:
                return answer.status

        return list(await asyncio.gather(*(post(chat) for chat in chats)))


async def test_two_workers_share_the_port_survive_a_killed_worker_and_stop_on_sigterm(
    database: Database, fake: FakeBotApi, tmp_path: Path
) -> None:
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/telegram/webhook"
    env = environment(
        tmp_path,
        DATABASE_URL=database.url,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_BASE_URL=fake.url,
        TELEGRAM_BOT_USERNAME="afterschool_test_bot",
        WEBHOOK_URL=webhook,
        WEBHOOK_SECRET=SECRET,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        LEADER_CHECK_SECONDS="0.2",
    )
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        supervisor = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            "--workers",
            "2",
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        await until(lambda: len(fake.calls_of("setWebhook")) >= 2 or supervisor.returncode is not None, 60)
        assert supervisor.returncode is None, log_path.read_text()
        workers = children_of(supervisor.pid)
        assert len(workers) == 2, log_path.read_text()

        before = {pid: cpu_seconds(pid) for pid in workers}
        assert await post_updates(fake, webhook, range(700001, 700161)) == [200] * 160
        assert len(fake.sent) == 160  # each answered before its 200 came back
        worked = {pid: cpu_seconds(pid) - before[pid] for pid in workers}
        assert all(seconds > 0.1 for seconds in worked.values()), worked  # both took updates

        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        await until(lambda: not exists(killed))  # reaped: its listening socket is closed
        assert await post_updates(fake, webhook, range(700201, 700221)) == [200] * 20  # the other serves

        await until(lambda: len(fake.calls_of("setWebhook")) >= 3)  # the replacement is up
        replacement = (children_of(supervisor.pid) - workers).pop()
        before = {pid: cpu_seconds(pid) for pid in children_of(supervisor.pid)}
        assert await post_updates(fake, webhook, range(700301, 700461)) == [200] * 160
        assert cpu_seconds(replacement) - before[replacement] > 0.1
        assert len(fake.sent) == 340
        running = children_of(supervisor.pid)
    finally:
        if supervisor.returncode is None:
            supervisor.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(supervisor.wait(), 30)
    text = log_path.read_text()
    assert code == 0, text
    assert f"pid {killed}) exited unexpectedly" in text
    assert not any(exists(pid) for pid in running), "a worker outlived the supervisor"
    assert TOKEN.split(":")[1] not in text and SECRET not in text


async def test_several_workers_need_a_webhook(tmp_path: Path) -> None:
    env = environment(tmp_path, DEFAULT_LOCALE="en", TELEGRAM_BOT_TOKEN=TOKEN)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        "--workers",
        "2",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "WEBHOOK_URL" in err.decode() and "--workers 2" in err.decode()


async def test_a_stopping_worker_answers_the_update_in_hand_before_it_lets_go(
    database: Database, fake: FakeBotApi, tmp_path: Path
) -> None:
    """SIGTERM while an update is being processed: its reply still goes out, then its 200."""
    port = free_port()
    webhook = f"http://127.0.0.1:{port}/telegram/webhook"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database.url,
        data_dir=tmp_path,
        telegram_bot_token=SecretStr(TOKEN),
        telegram_api_base_url=fake.url,
        telegram_bot_username="afterschool_test_bot",
        webhook_url=webhook,
        webhook_secret=SecretStr(SECRET),
        http_host="127.0.0.1",
        http_port=port,
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(serve(settings, stop=stop, run_migrations=False, reuse_port=True))
    await until(lambda: fake.calls_of("setWebhook") or serving.done())
    fake.hold_sends()  # the reply waits at Telegram's door: the update is in hand
    posting = asyncio.create_task(post_updates(fake, webhook, range(710001, 710002)))
    await until(lambda: fake.held)
    stop.set()  # what SIGTERM does
    await asyncio.sleep(0.5)
    assert not serving.done()
    fake.release()
    assert await posting == [200]
    assert fake.messages_to(710001), "the update was acknowledged without its reply"
    await asyncio.wait_for(serving, 20)
