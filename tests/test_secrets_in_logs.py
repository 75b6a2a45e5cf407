"""Issue 9's acceptance: no secret appears in the logs of a real run.

`afterschool run` as a process, at LOG_LEVEL=DEBUG, with a recognisable bot token, webhook secret
and SECRET_KEY, against the local fake Bot API. A committee member joins and asks for a dashboard
link, signs in with it, a guesser tries links, a forged webhook is refused and a Bot API call
fails. Then everything the processes wrote is searched for every secret, and for the one-time
secrets the run made (the invite code, the sign-in link).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.logs import JsonFormatter, RedactSecrets, secrets_of
from handlers.start import ACCEPT
from tests.fakebotapi import FakeBotApi
from tests.school import EXAMPLES
from tests.telegram_app import SECRET_HEADER, free_port

pytestmark = pytest.mark.e2e

TOKEN = "555000111:AAsecretTokenHalfForLogTest-Zq9xY8w7"
WEBHOOK_SECRET = "hook-Secret_for_log_test_77"
SECRET_KEY = "secret-key-for-the-log-test-0042"
COMMITTEE = 7001


async def afterschool(env: dict[str, str], cwd: Path, *args: str) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=env, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def test_a_debug_run_logs_no_secret(tmp_path: Path) -> None:
    async with FakeBotApi(token=TOKEN) as fake:
        port = free_port()
        hook = f"http://127.0.0.1:{port}/telegram/webhook"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TELEGRAM_", "WEBHOOK_", "DATABASE_URL", "SECRET_KEY", "LOG_"))
            and "proxy" not in k.lower()
        }
        env.update(
            DATA_DIR=str(tmp_path / "data"),
            TELEGRAM_BOT_TOKEN=TOKEN,
            TELEGRAM_API_BASE_URL=fake.url,
            WEBHOOK_URL=hook,
            WEBHOOK_SECRET=WEBHOOK_SECRET,
            SECRET_KEY=SECRET_KEY,
            PUBLIC_BASE_URL="https://school.example",  # a URL Telegram takes in a button
            HTTP_PORT=str(port),
            LOG_LEVEL="DEBUG",
            DEFAULT_LOCALE="zh_CN",
        )
        await afterschool(env, tmp_path, "import-roster", str(EXAMPLES / "roster.csv"))
        printed, _ = await afterschool(env, tmp_path, "invite", "--role", "committee", "--person", "C001")
        code = re.search(r"start=(\w+)", printed)
        assert code, printed

        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env, stdout=-1, stderr=-1
        )
        try:
            await fake.wait_for(lambda: fake.calls_of("setWebhook"), timeout=60)
            async with aiohttp.ClientSession() as http:

                async def post(update: dict[str, Any], secret: str = WEBHOOK_SECRET) -> int:
                    async with http.post(hook, json=update, headers={SECRET_HEADER: secret}) as r:
                        return r.status

                assert await post(fake.push_text(COMMITTEE, f"/start {code.group(1)}")) == 200
                assert await post(fake.push_callback(COMMITTEE, ACCEPT)) == 200  # the privacy notice
                assert await post(fake.push_text(COMMITTEE, "/dashboard")) == 200
                urls = [b.get("url", "") for b in fake.sent_to(COMMITTEE)[-1].buttons]
                link = re.search(r"/dashboard/login\?token=([^&\s]+)", " ".join(urls))
                assert link, urls
                here = f"http://127.0.0.1:{port}{link.group(0)}"
                async with http.get(here, allow_redirects=False) as r:  # signs in (a Secure cookie)
                    assert r.status == 303 and r.headers["Location"] == "/dashboard"
                async with http.get(here) as r:  # a second time: refused, and logged
                    assert r.status == 403
                forged = f"http://127.0.0.1:{port}/dashboard/login?token=1.guess.{'0' * 64}"
                async with http.get(forged) as r:
                    assert r.status == 403
                assert await post(fake.push_text(COMMITTEE, "/help"), secret="wrong-" + WEBHOOK_SECRET) == 403
                fake.fail_next("sendMessage", 502, "Bad Gateway")  # an error path, with a traceback
                assert await post(fake.push_text(COMMITTEE, "/help")) == 200
                assert await post(fake.push_text(COMMITTEE, "/help")) == 200
        finally:
            run.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(run.communicate(), 30)
        assert run.returncode == 0, err.decode()
    logged = out.decode() + err.decode()
    assert " DEBUG " in logged and "dashboard link refused" in logged  # the logs were really on
    assert "update" in logged and "failed" in logged  # the 502's traceback
    one_time = [link.group(1), link.group(1).split(".")[1], code.group(1)]
    for secret in [TOKEN, TOKEN.split(":")[1], WEBHOOK_SECRET, SECRET_KEY, *one_time]:
        assert secret not in logged, f"{secret[:4]}… appears in the log"


def test_the_filter_masks_arguments_tracebacks_and_one_time_secrets() -> None:
    """Whatever the handler and format: the JSON formatter gets the masked traceback too."""
    token = "123:hidden-token-part"
    redact = RedactSecrets([token, "sk-abcdef", "hidden-token-part"])
    try:
        raise RuntimeError(f"https://api.telegram.org/bot{token}/getMe failed")
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "calling %s with %s", (token, "sk-abcdef"), sys.exc_info()
        )
    record.stack_info = f"stack mentions {token}"
    link = "https://s.example/dashboard/login?token=12.AbCdEfGhIjKlMnOpQrStUv." + "a" * 64
    assert redact.filter(record)
    line = json.loads(JsonFormatter().format(record))
    for part in (line["message"], line["traceback"], line["stack"]):
        assert "hidden-token-part" not in part and "sk-abcdef" not in part
    assert line["message"] == "calling *** with ***"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sent %s and /start=X", (link,), None)
    redact.filter(record)
    assert "AbCdEfGh" not in record.getMessage() and "token=***" in record.getMessage()


def test_the_secrets_named_include_the_token_half_and_the_database_password() -> None:
    found = secrets_of(
        SecretStr(TOKEN), None, SecretStr(SECRET_KEY), "postgresql://bot:db-pass-word-9917@db:5432/x"
    )
    assert set(found) == {TOKEN, TOKEN.split(":")[1], SECRET_KEY, "db-pass-word-9917"}
    assert secrets_of(None, None, None, None) == []
