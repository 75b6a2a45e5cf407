"""Issue 2's acceptance story, exactly as an administrator types it, against a local fake Bot API.

import-roster, publish-terms, invite, then `afterschool run` as a real process with
TELEGRAM_BOT_TOKEN and TELEGRAM_API_BASE_URL: a parent who sends /start <code> is greeted by the
student's name, and /terms shows the fee standard.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from handlers.start import ACCEPT
from tests.fakebotapi import FakeBotApi
from tests.school import EXAMPLES

pytestmark = pytest.mark.e2e

TOKEN = "987654321:AAHacceptanceTokenForTests_abcdef01"
PARENT = 4242


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def afterschool(env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_admin_commands_then_run_against_a_bot_api_server(tmp_path: Path) -> None:
    async with FakeBotApi(token=TOKEN) as fake:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TELEGRAM_", "WEBHOOK_", "DATABASE_URL")) and "proxy" not in k.lower()
        }
        env.update(
            DATA_DIR=str(tmp_path / "data"),
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE_URL=fake.url,
            HTTP_PORT=str(free_port()),
            DEFAULT_LOCALE="zh_CN",
        )
        await afterschool(env, tmp_path, "import-roster", str(EXAMPLES / "roster.csv"))
        await afterschool(env, tmp_path, "publish-terms", str(EXAMPLES / "terms.yaml"))
        printed = await afterschool(env, tmp_path, "invite", "--role", "parent", "--student", "S2026101")
        link = re.search(r"https://t\.me/\w+\?start=(\w+)", printed)
        assert link, printed  # the username was asked from the Bot API server (getMe)
        code = link.group(1)

        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            fake.push_text(PARENT, f"/start {code}")
            notice = (await fake.wait_for_messages(PARENT, 1, timeout=60))[0]
            assert "隐私说明" in notice and "365 天" in notice
            fake.push_callback(PARENT, ACCEPT)
            greeting = (await fake.wait_for_messages(PARENT, 2, timeout=30))[1]
            assert "曹若曦" in greeting and "母亲" in greeting
            fake.push_text(PARENT, "/terms")
            terms = (await fake.wait_for_messages(PARENT, 3, timeout=30))[2]
            assert "每月 200 元" in terms and "每次 12 元" in terms
        finally:
            run.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(run.communicate(), 30)
        assert run.returncode == 0, err.decode()
        assert TOKEN not in err.decode(), "the bot token must never be logged"
        assert TOKEN.split(":")[1] not in err.decode()
