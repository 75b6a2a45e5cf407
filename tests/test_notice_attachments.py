"""A notice's attachment reaches Telegram as a document and the web chat as a download link that
only its recipients can open."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import admin
from bot.app import serve
from bot.channels import Status
from bot.config import Settings
from bot.demo import prepare_demo
from bot.telegram import TelegramAdapter
from handlers.dialog import Attachment, Reply
from handlers.dispatch import Deps
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import NoticePreference, PlatformAccount
from tests.fakebotapi import FakeBotApi
from tests.school import parent_code

TOKEN = "987654321:AAAttachmentTokenForTests_abc-7890"


@pytest.fixture(autouse=True)
def _only_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def attachment(data_dir: Path, name: str = "菜单.pdf") -> Attachment:
    path = data_dir / "attachments" / "0f1e2d" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.4 weekly menu")
    return Attachment(name, f"attachments/0f1e2d/{name}")


async def test_telegram_sends_the_document_after_the_text(tmp_path: Path, deps: Deps) -> None:
    async with FakeBotApi(token=TOKEN) as fake:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            telegram_bot_token=SecretStr(TOKEN),
            telegram_api_base_url=fake.url,
            telegram_bot_username=None,
            webhook_url=None,
            data_dir=tmp_path,
        )
        telegram = TelegramAdapter(settings, deps, wake=lambda: None)
        await telegram.start()
        try:
            result = await telegram.deliver("42", Reply("<b>本周菜单</b>", document=attachment(tmp_path)))
            assert result.status is Status.SENT
            assert [s.method for s in fake.sent_to(42)] == ["sendMessage", "sendDocument"]
            assert fake.calls_of("sendDocument")[0].params["document"]["filename"] == "菜单.pdf"

            # A missing file or a path out of DATA_DIR fails the message before anything is sent.
            for broken in (
                Attachment("x.pdf", "attachments/none/x.pdf"),
                Attachment("p", "../../etc/passwd"),
            ):
                failed = await telegram.deliver("43", Reply("通知", document=broken))
                assert failed.status is Status.FAILED and "attachment" in failed.error
            assert fake.sent_to(43) == []
        finally:
            await telegram.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[str, async_sessionmaker[AsyncSession]]]:
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}",
        http_host="127.0.0.1",
        http_port=port,
        telegram_bot_token=None,
        public_base_url=None,
        webhook_url=None,
    )
    engine = create_engine(settings.resolved_database_url())
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    await prepare_demo(sessionmaker)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop=stop))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as probe:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with probe.get(f"{base}/healthz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.05)
        yield base, sessionmaker
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)
        await engine.dispose()


async def no_quiet_hours(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """The notice goes out now: at night (the default quiet hours, 21:00-07:00 school time) it would
    wait for the morning, and the test would depend on the hour it runs at."""
    async with sessionmaker.begin() as session:
        for account_id in await session.scalars(select(PlatformAccount.id)):
            session.add(NoticePreference(account_id=account_id, digest_time=None, quiet_hours=""))


async def test_web_chat_gets_a_download_link_only_recipients_can_open(tmp_path: Path) -> None:
    async with running(tmp_path) as (base, sessionmaker):
        parent = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        visitor = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        try:
            for browser in (parent, visitor):
                async with browser.get(f"{base}/chat") as page:
                    assert page.status == 200
            async with parent.ws_connect(f"{base}/chat/ws") as ws:
                code = await parent_code(sessionmaker, "S2026101", notice_accepted=True)
                await ws.send_json({"type": "text", "text": f"/start {code}"})
                assert "曹若曦" in (await ws.receive_json(timeout=10))["text"]
                await no_quiet_hours(sessionmaker)
                menu = tmp_path / "menu.md"
                menu.write_text("# 本周菜单\n见附件。", encoding="utf-8")
                (tmp_path / "菜单.pdf").write_bytes(b"%PDF-1.4 weekly menu")
                request = admin.NoticeRequest(path=menu, to="class:一年级(1)班", attach=tmp_path / "菜单.pdf")
                await admin.send_notice_file(sessionmaker, tmp_path, request)
                pushed = await ws.receive_json(timeout=10)
            assert "本周菜单" in pushed["text"]
            assert pushed["document"]["name"] == "菜单.pdf" and "path" not in pushed["document"]
            url = base + pushed["document"]["url"]
            async with parent.get(url) as got:
                assert got.status == 200 and await got.read() == b"%PDF-1.4 weekly menu"
                assert got.headers["Content-Disposition"].startswith("attachment;")
            async with visitor.get(url) as refused:
                assert refused.status == 404
            async with aiohttp.ClientSession() as nobody, nobody.get(url) as refused:
                assert refused.status == 404
            async with parent.get(f"{base}/chat/files/..%2F..%2Fapp.sqlite3/x") as refused:
                assert refused.status == 404
        finally:
            await parent.close()
            await visitor.close()
