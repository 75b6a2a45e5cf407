"""The web chat over real HTTP and a real WebSocket, against the real app (`bot.app.serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.app import MAX_REQUEST_BYTES, serve
from bot.config import Settings
from bot.demo import GROUPS, list_personas, prepare_demo, run_demo
from bot.webchat import COOKIE, INVITE_FAILURES, MAX_FRAME_BYTES
from handlers.dialog import Links
from storage import accounts, invites, outbox
from storage.clock import utcnow
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import AccountBinding, AuditLog, InviteFailure, Outbox, OutboxStatus, Person, School
from tests.school import parent_code, person_code

TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveApp:
    """The app serving on a free port, its database, and a way to open fresh browsers."""

    base: str
    sessionmaker: async_sessionmaker[AsyncSession]
    browsers: list[aiohttp.ClientSession]

    def browser(self) -> aiohttp.ClientSession:
        """A client with its own cookie jar (unsafe=True: the server is an IP address)."""
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.browsers.append(session)
        return session

    async def person_id(self, person_no: str) -> int:
        async with self.sessionmaker() as session:
            found = await session.scalar(select(Person.id).where(Person.person_no == person_no))
        assert found is not None, person_no
        return found


@contextlib.asynccontextmanager
async def live_app(tmp_path: Path, *, demo: bool) -> AsyncIterator[LiveApp]:
    """Serve the example school (loaded by bot.demo.prepare_demo) until the block ends."""
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.sqlite3'}",
        http_host="127.0.0.1",
        http_port=port,
        telegram_bot_token=None,
        telegram_bot_username=None,
        public_base_url=None,
        webhook_url=None,
    )
    engine = create_engine(settings.resolved_database_url())
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    await prepare_demo(sessionmaker)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, demo=demo, stop=stop))
    app = LiveApp(f"http://127.0.0.1:{port}", sessionmaker, [])
    try:
        probe = app.browser()
        for _ in range(200):
            assert not server.done(), server.exception() if server.done() else None
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with probe.get(f"{app.base}/healthz") as r:
                    if r.status == 200:
                        break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the app did not start")
        yield app
    finally:
        for browser in app.browsers:
            await browser.close()
        stop.set()
        await asyncio.wait_for(server, TIMEOUT)
        await engine.dispose()


def page_config(html: str) -> dict[str, Any]:
    """The settings the page hands its script (the JSON in <script id="chat-config">)."""
    start = html.index('<script id="chat-config" type="application/json">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    config: dict[str, Any] = json.loads(body)
    return config


async def open_chat(app: LiveApp, browser: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    """Load the page (which sets the identity cookie) and connect its socket."""
    async with browser.get(f"{app.base}/chat") as page:
        assert page.status == 200
    return await browser.ws_connect(f"{app.base}/chat/ws")


async def say(ws: aiohttp.ClientWebSocketResponse, text: str) -> dict[str, Any]:
    await ws.send_json({"type": "text", "text": text})
    return await ws.receive_json(timeout=TIMEOUT)


async def test_visitor_binds_with_invite_code_and_reads_the_terms(tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=False) as app:
        code = await parent_code(app.sessionmaker, "S2026101", notice_accepted=True)
        assert Links(app.base).invite(code) == f"{app.base}/chat?start={code}"
        browser = app.browser()
        async with browser.get(f"{app.base}/chat?start={code}") as page:
            html = await page.text()
            cookie = page.headers["Set-Cookie"]
        assert page_config(html)["start"] == code  # the page sends /start CODE once connected
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/chat" in cookie
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]

        async with browser.ws_connect(f"{app.base}/chat/ws") as ws:
            bound = await say(ws, f"/start {code}")
            assert bound["type"] == "reply"
            assert "绑定成功" in bound["text"] and "<b>曹若曦</b>" in bound["text"]
            assert [b["payload"] for row in bound["buttons"] for b in row] == ["m:open", "t:show"]
            terms = await say(ws, "/terms")
            assert "每月 200 元" in terms["text"]
            assert terms["buttons"][0][0]["url"].startswith(f"{app.base}/terms/")
            await ws.send_json({"type": "button", "payload": "m:open"})
            assert "/terms" in (await ws.receive_json(timeout=TIMEOUT))["text"]

        # The same browser (cookie) is the same chat: it is still bound after reconnecting.
        async with browser.ws_connect(f"{app.base}/chat/ws") as ws:
            assert "您好，<b>董静</b>" in (await say(ws, "/start"))["text"]


async def test_a_new_visitor_is_greeted_in_the_page_language(tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=False) as app:
        browser = app.browser()
        async with browser.get(f"{app.base}/chat?lang=en") as page:
            html = await page.text()
        assert "After-school service · web chat" in html and page_config(html)["greet"] is True
        async with browser.ws_connect(f"{app.base}/chat/ws?lang=en") as ws:
            reply = await say(ws, "/start")
            assert "invite code" in reply["text"] and f"{app.base}/terms" in reply["text"]
        async with browser.get(f"{app.base}/chat") as page:
            assert page_config(await page.text())["greet"] is False  # a returning browser is not re-greeted


async def test_forged_buttons_and_bad_frames_get_answers(tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=False) as app:
        browser = app.browser()
        ws = await open_chat(app, browser)
        async with ws:
            await ws.send_json({"type": "button", "payload": "zz:forged"})
            assert "按钮已失效" in (await ws.receive_json(timeout=TIMEOUT))["text"]
            await ws.send_json({"type": "button", "payload": "l:" + "x" * 200})
            assert "无效" in (await ws.receive_json(timeout=TIMEOUT))["text"]

            bad: list[Any] = [
                "not json",
                "[1, 2]",
                '{"type": "text"}',
                '{"type": "text", "text": "   "}',
                '{"type": "button", "payload": 5}',
                '{"type": "upload"}',
            ]
            for frame in bad:
                await ws.send_str(frame)
                answer = await ws.receive_json(timeout=TIMEOUT)
                assert answer == {"type": "error", "code": "malformed", "text": answer["text"]}, frame
                assert "格式无法识别" in answer["text"]
            await ws.send_bytes(b"\x00\x01")
            assert (await ws.receive_json(timeout=TIMEOUT))["code"] == "malformed"
            await ws.send_json({"type": "text", "text": "x" * MAX_FRAME_BYTES})
            too_large = await ws.receive_json(timeout=TIMEOUT)
            assert too_large["code"] == "too_large" and "消息太大" in too_large["text"]
            # After all that the socket still works.
            assert "/terms" in (await say(ws, "/help"))["text"]

        # A frame over the hard limit closes that socket (1009); the server goes on.
        ws = await browser.ws_connect(f"{app.base}/chat/ws")
        async with ws:
            await ws.send_str("x" * (5 * MAX_FRAME_BYTES))
            closed = await ws.receive(timeout=TIMEOUT)
            assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 1009
        async with browser.ws_connect(f"{app.base}/chat/ws") as ws:
            assert "/terms" in (await say(ws, "/help"))["text"]

        # Another site's page may not open a socket with this browser's cookie.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await browser.ws_connect(f"{app.base}/chat/ws", headers={"Origin": "https://evil.example"})
        assert refused.value.status == 403


async def test_guessing_invite_codes_is_limited_per_browser_and_per_address(tmp_path: Path) -> None:
    """Five wrong codes an hour per chat (storage.invites), and, since a new browser identity
    costs nothing, 20 an hour per address: then even a right code from there waits, while the
    rest of the chat and other addresses are untouched."""
    async with live_app(tmp_path, demo=False) as app:
        code = await parent_code(app.sessionmaker, "S2026101", notice_accepted=True)
        guesser = {"X-Real-IP": "203.0.113.5"}  # the test talks to 127.0.0.1: our "proxy"
        per_browser = invites.MAX_FAILURES_PER_HOUR
        for n in range(INVITE_FAILURES // per_browser):
            async with app.browser().ws_connect(f"{app.base}/chat/ws", headers=guesser) as ws:
                for _ in range(per_browser):
                    assert "邀请码不正确" in (await say(ws, f"/start {invites.new_code()}"))["text"]
                if n == 0:  # the sixth from the same browser: its own limit first
                    assert "错误次数过多" in (await say(ws, f"/start {invites.new_code().lower()}"))["text"]
        async with app.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(InviteFailure)) == INVITE_FAILURES

        async with app.browser().ws_connect(f"{app.base}/chat/ws", headers=guesser) as ws:
            assert "错误次数过多" in (await say(ws, f"/start {code}"))["text"]
            assert "错误次数过多" in (await say(ws, code))["text"]
            assert "/terms" in (await say(ws, "/help"))["text"]  # not a code: answered as ever
        async with app.sessionmaker() as session:  # refused before any query: nothing written
            assert await session.scalar(select(func.count()).select_from(InviteFailure)) == INVITE_FAILURES
            assert await session.scalar(select(func.count()).select_from(AccountBinding)) == 0

        elsewhere = {"X-Real-IP": "198.51.100.2"}
        async with app.browser().ws_connect(f"{app.base}/chat/ws", headers=elsewhere) as ws:
            assert "绑定成功" in (await say(ws, f"/start {code}"))["text"]


async def test_oversized_requests_get_413_and_the_server_goes_on(tmp_path: Path) -> None:
    """Every POST is bounded (MAX_REQUEST_BYTES on the app; the webhook and socket frames have
    their own limits): a body over it is refused before it is read into memory."""
    async with live_app(tmp_path, demo=True) as app:
        browser = app.browser()
        big = b"x" * (MAX_REQUEST_BYTES + 1)
        json_type = {"Content-Type": "application/json"}
        async with browser.post(f"{app.base}/chat/persona", data=io.BytesIO(big), headers=json_type) as r:
            assert r.status == 413
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for path in ("/dashboard/surveys/new", "/dashboard/logout"):
            async with browser.post(f"{app.base}{path}", data=io.BytesIO(b"title=" + big), headers=form) as r:
                assert r.status == 413, path
        async with browser.get(f"{app.base}/healthz") as r:
            assert r.status == 200
        ws = await open_chat(app, browser)
        async with ws:
            reply = await say(ws, "x" * 4001)  # fits a frame, over a message's length
            assert "太长" in reply["text"]


async def test_persona_routes_do_not_exist_outside_the_demo(tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=False) as app:
        browser = app.browser()
        async with browser.get(f"{app.base}/chat/personas") as r:
            assert r.status == 404
        async with browser.post(f"{app.base}/chat/persona", json={"person_id": 1}) as r:
            assert r.status == 404
        async with browser.get(f"{app.base}/chat") as r:
            assert 'id="personas"' not in await r.text()


async def test_demo_visitor_picks_a_parent_and_is_greeted(tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=True) as app:
        browser = app.browser()
        async with browser.get(f"{app.base}/chat/personas") as r:
            groups = {g["group"]: g for g in (await r.json())["groups"]}
        assert list(groups) == ["admin", "committee", "head_teacher", "staff", "parent"]
        labels = {p["label"]: p["id"] for g in groups.values() for p in g["people"]}
        assert "周校长 (学校管理员)" in labels
        assert "李红梅 (一年级(1)班班主任)" in labels
        mother = labels["曹若曦的母亲 董静 (一年级(1)班)"]
        assert mother == await app.person_id("S2026101-G1")
        assert "王子轩的父亲 王磊 (一年级(1)班)" not in labels  # third pupil: not offered
        assert len(groups["parent"]["people"]) == 4 * 2 * 2 - 1  # S2026302 has one guardian

        async with browser.post(f"{app.base}/chat/persona", json={"person_id": mother}) as r:
            assert r.status == 200 and (await r.json())["name"] == "董静"
            assert COOKIE in r.cookies and r.cookies[COOKIE]["httponly"]
        async with browser.get(f"{app.base}/chat") as page:
            assert page_config(await page.text())["current"] == "董静"
        async with browser.ws_connect(f"{app.base}/chat/ws") as ws:
            greeting = (await say(ws, "/start"))["text"]
        assert "您好，<b>董静</b>" in greeting and "<b>曹若曦</b>" in greeting
        async with app.sessionmaker() as session:
            audited = await session.scalar(
                select(func.count(AuditLog.id)).where(
                    AuditLog.action == "demo.bound", AuditLog.target_id == mother
                )
            )
        assert audited == 1

        async with browser.get(f"{app.base}/chat/personas?lang=en") as r:
            english = [p["label"] for g in (await r.json())["groups"] for p in g["people"]]
        assert "董静, 母亲 of 曹若曦 (一年级(1)班)" in english


async def test_demo_persona_requests_are_checked(tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=True) as app:
        browser = app.browser()
        url = f"{app.base}/chat/persona"
        async with browser.post(url, data="person_id=1") as r:
            assert r.status == 415
        async with browser.post(url, data="{", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
        for body in ({"person_id": "1"}, {"person_id": True}, {}, [1]):
            async with browser.post(url, json=body) as r:
                assert r.status == 400, body
        async with browser.post(url, json={"person_id": 999999}) as r:
            assert r.status == 404
        async with browser.post(url, json={"person_id": None}) as r:  # "a visitor": unbound
            assert r.status == 200
        async with browser.ws_connect(f"{app.base}/chat/ws") as ws:
            assert "邀请码" in (await say(ws, "/start"))["text"]


async def wait_for_outbox(app: LiveApp, ready: Any, outbox_id: int | None = None) -> Outbox:
    """Poll until the row (or the newest row) satisfies `ready`: the sender works in the background."""
    row = None
    for _ in range(int(TIMEOUT / 0.05)):
        async with app.sessionmaker() as session:
            if outbox_id is None:
                row = await session.scalar(select(Outbox).order_by(Outbox.id.desc()))
            else:
                row = await session.get(Outbox, outbox_id)
        if row is not None and ready(row):
            return row
        await asyncio.sleep(0.05)
    pytest.fail(f"outbox row never got ready: {row and (row.status, row.attempts)}")


async def test_outbox_messages_reach_an_open_tab_and_wait_for_a_closed_one(tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=False) as app:
        teacher = app.browser()
        teacher_ws = await open_chat(app, teacher)
        async with teacher_ws:
            code = await person_code(app.sessionmaker, "teacher", "T001", notice_accepted=True)
            await say(teacher_ws, f"/start {code}")
            # Open tab: the class teacher hears at once that a guardian joined.
            async with app.browser().ws_connect(f"{app.base}/chat/ws") as parent:
                code = await parent_code(app.sessionmaker, "S2026101", notice_accepted=True)
                await say(parent, f"/start {code}")
            pushed = await teacher_ws.receive_json(timeout=TIMEOUT)
            assert "<b>曹若曦</b>" in pushed["text"] and "<b>董静</b>" in pushed["text"]
            row = await wait_for_outbox(app, lambda r: r.status == OutboxStatus.SENT.value)
            assert row.attempts == 0

        # No tab open: the message waits for the teacher, using up none of its retry attempts.
        async with app.browser().ws_connect(f"{app.base}/chat/ws") as parent:
            code = await parent_code(app.sessionmaker, "S2026102", notice_accepted=True)
            await say(parent, f"/start {code}")
        row = await wait_for_outbox(app, lambda r: r.last_attempt_at is not None)
        assert row.status == OutboxStatus.PENDING.value
        assert row.attempts == 0

        # Say the back-off has grown to an hour, and a reminder is scheduled for tomorrow.
        async with app.sessionmaker.begin() as session:
            waiting = await session.get(Outbox, row.id)
            assert waiting is not None
            waiting.not_before = utcnow() + timedelta(hours=1)
            scheduled = await outbox.enqueue(
                session,
                waiting.account_id,
                {"text": "tomorrow", "buttons": []},
                not_before=utcnow() + timedelta(days=1),
            )
        # The teacher comes back: the waiting message arrives at once; the scheduled one waits.
        async with teacher.ws_connect(f"{app.base}/chat/ws") as teacher_ws:
            pushed = await teacher_ws.receive_json(timeout=TIMEOUT)
            assert "<b>高佳怡</b>" in pushed["text"]
        await wait_for_outbox(app, lambda r: r.status == OutboxStatus.SENT.value, row.id)
        async with app.sessionmaker() as session:
            later = await session.get(Outbox, scheduled.id)
        assert later is not None and later.status == OutboxStatus.PENDING.value


async def test_personas_and_direct_binding_on_each_database(sessionmaker) -> None:
    """The picker's query and bind_account, on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""
    assert await prepare_demo(sessionmaker) is True
    assert await prepare_demo(sessionmaker) is False  # a restarted demo keeps its data
    async with sessionmaker() as session:
        found = await list_personas(session, "zh_CN")
    assert [p.group for p in found] == sorted((p.group for p in found), key=GROUPS.index)
    assert len({p.person_id for p in found}) == len(found)
    mother = next(p for p in found if p.label == "曹若曦的母亲 董静 (一年级(1)班)")
    async with sessionmaker.begin() as session:
        account = await accounts.get_or_create_account(session, "web", "tok", "tok", "zh_CN")
        person = await session.get(Person, mother.person_id)
        assert person is not None
        first = await accounts.bind_account(session, account, person)
        assert (await accounts.bind_account(session, account, person)).id == first.id
        identity = await accounts.load_identity(session, account)
        assert [c.name for c in identity.children] == ["曹若曦"]
        other = School(code="other", name="Other")
        session.add(other)
        await session.flush()
        stranger = Person(school_id=other.id, person_no="X1", name="X")
        session.add(stranger)
        await session.flush()
        with pytest.raises(accounts.OtherSchool):
            await accounts.bind_account(session, account, stranger)


async def test_run_demo_loads_the_example_school_and_serves_without_telegram(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        http_port=port,
        database_url="postgresql://nowhere/x",  # the demo must ignore both
        telegram_bot_token=SecretStr("123456:not-a-real-token"),
    )
    caplog.set_level(logging.INFO, logger="bot.demo")
    demo = asyncio.create_task(run_demo(settings))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                assert not demo.done()
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(f"http://127.0.0.1:{port}/chat/personas") as r:
                        if r.status == 200:
                            assert (await r.json())["groups"]
                            break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the demo did not start")
    finally:
        demo.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await demo
    assert (tmp_path / "afterschool.sqlite3").exists()
    assert f"open http://127.0.0.1:{port}/chat" in caplog.text
