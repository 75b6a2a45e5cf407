"""A reply can carry a picture (a survey chart as PNG): it goes through the outbox, reaches Telegram
as a photo (with its text as the caption when that fits) and shows inline in the web chat, where
only the chat it was sent to can open it and nothing outside DATA_DIR is ever served."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import async_playwright, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Status
from bot.ratelimit import Limits, Window
from bot.telegram import CAPTION_LIMIT, caption_fits
from bot.web import DEFAULT_LOCALE
from bot.webchat import COOKIE, WebChat
from handlers.dialog import Attachment, Button, Reply
from handlers.dispatch import Deps
from storage import outbox
from storage.models import Lane, Outbox, OutboxStatus, Person
from tests.delivery_helpers import TOKEN, add_accounts, eventually, telegram_channel, telegram_sender
from tests.fakebotapi import FakeBotApi, Upload
from tests.parts import chromium_path, require
from tests.school import load_example_school, parent_code
from tests.test_browser import LAUNCH_ARGS, account_of, last_bot, phone_page, pick
from tests.test_webchat import live_app

# A valid 1×1 PNG (one teal pixel): enough for Telegram's image check and a browser's decoder.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS"
    b"\xde\x00\x00\x00\x0cIDATx\x9cc\xd0\xab5\x02\x00\x01\xba\x00\xde\xc4\x8a\xbf\x88\x00\x00\x00\x00"
    b"IEND\xaeB`\x82"
)
LIMITS = Limits(per_bot=Window(30, 1.0), per_chat=Window(3, 3.0), per_group=Window(20, 60.0))
BUTTONS = ((Button("查看详情", "survey:7"),),)


def chart(data_dir: Path, name: str = "q1.png", survey: int = 7, data: bytes = PNG) -> Attachment:
    """A chart where survey summaries will put theirs: DATA_DIR/surveys/<id>/<token>/<name>."""
    relative = f"surveys/{survey}/0a1b2c3d/{name}"
    path = data_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Attachment(name, relative)


# -- the reply itself -----------------------------------------------------------------------------


def test_a_photo_travels_in_the_outbox_payload_and_old_payloads_still_load() -> None:
    reply = Reply("<b>满意度</b>", BUTTONS, photo=Attachment("q1.png", "surveys/7/0a1b2c3d/q1.png"))
    payload = reply.to_payload()
    assert payload["photo"] == {"filename": "q1.png", "path": "surveys/7/0a1b2c3d/q1.png"}
    assert "document" not in payload
    assert Reply.from_payload(payload) == reply

    old = {
        "text": "通知",
        "buttons": [],
        "document": {"filename": "菜单.pdf", "path": "attachments/x/菜单.pdf"},
    }
    loaded = Reply.from_payload(old)
    assert loaded.photo is None and loaded.document == Attachment("菜单.pdf", "attachments/x/菜单.pdf")
    assert Reply.from_payload({"text": "旧消息"}) == Reply("旧消息")

    with pytest.raises(ValueError, match="not both"):
        Reply("x", document=Attachment("a.pdf", "a.pdf"), photo=Attachment("b.png", "b.png"))


def test_the_caption_limit_counts_what_telegram_counts() -> None:
    """1024 UTF-16 units after HTML parsing: tags are free, an entity is one, an emoji is two."""
    assert caption_fits("")
    assert caption_fits("<b>" + "满" * CAPTION_LIMIT + "</b>")
    assert caption_fits("&amp;" * CAPTION_LIMIT)
    assert not caption_fits("满" * (CAPTION_LIMIT + 1))
    assert not caption_fits("😀" * (CAPTION_LIMIT // 2 + 1))


# -- Telegram -------------------------------------------------------------------------------------


@pytest.fixture
async def bot_api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotApi]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with FakeBotApi(token=TOKEN) as api:
        yield api


async def queue_reply(sessionmaker: async_sessionmaker[AsyncSession], account_id: int, reply: Reply) -> None:
    async with sessionmaker.begin() as session:
        await outbox.enqueue(session, account_id, reply.to_payload(), lane=Lane.BULK)


async def statuses(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Outbox.status).order_by(Outbox.id)))


async def test_the_sender_sends_outbox_photos_to_telegram(
    sessionmaker: async_sessionmaker[AsyncSession], bot_api: FakeBotApi, tmp_path: Path
) -> None:
    """Short text: one sendPhoto with the text as caption and the buttons. Long text: the text
    (with the buttons) first, then the photo alone, as documents go. A 429 on the photo waits."""
    accounts = await add_accounts(sessionmaker, [700001, 700002])
    long_text = "<b>本学期满意度调查结果</b>\n" + "各项评价如下。" * 200  # over 1024 after parsing
    await queue_reply(
        sessionmaker, accounts["700001"], Reply("<b>满意度</b> 共 12 人回答", BUTTONS, photo=chart(tmp_path))
    )
    await queue_reply(
        sessionmaker, accounts["700002"], Reply(long_text, BUTTONS, photo=chart(tmp_path, "q2.png"))
    )
    bot_api.fail_next("sendPhoto", 429, "Too Many Requests: retry after 1", retry_after=1)

    async with telegram_sender(bot_api, sessionmaker, tmp_path, LIMITS, concurrency=1) as sender:
        await eventually(lambda: _all(sessionmaker, OutboxStatus.SENT.value, 2))
        assert sender.stats.rate_limited == 1

    [short] = bot_api.sent_to(700001)
    assert short.method == "sendPhoto"
    assert short.photo == Upload("q1.png", PNG)  # the very bytes of the file, under its name
    assert short.text == "满意度 共 12 人回答" and short.html == "<b>满意度</b> 共 12 人回答"
    assert [b["callback_data"] for b in short.buttons] == ["survey:7"]
    assert bot_api.calls_of("sendPhoto")[-2].params["parse_mode"] == "HTML"

    text, photo = bot_api.sent_to(700002)
    assert text.method == "sendMessage" and text.text.startswith("本学期满意度调查结果")
    assert [b["callback_data"] for b in text.buttons] == ["survey:7"]
    assert photo.method == "sendPhoto" and photo.photo == Upload("q2.png", PNG)
    assert photo.text == "" and photo.reply_markup is None


async def _all(sessionmaker: async_sessionmaker[AsyncSession], status: str, count: int) -> bool:
    return await statuses(sessionmaker) == [status] * count


async def test_telegram_errors_on_a_photo_are_classified_like_any_message(
    sessionmaker: async_sessionmaker[AsyncSession], bot_api: FakeBotApi, tmp_path: Path
) -> None:
    async with telegram_channel(bot_api, sessionmaker, tmp_path) as telegram:
        reply = Reply("图表", photo=chart(tmp_path))

        bot_api.fail_next("sendPhoto", 429, "Too Many Requests: retry after 3", retry_after=3)
        limited = await telegram.deliver("42", reply)
        assert limited.status is Status.RETRY and limited.retry_after == 3

        bot_api.fail_next("sendPhoto", 400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        refused = await telegram.deliver("42", reply)
        assert refused.status is Status.FAILED and "photo_invalid_dimensions" in refused.error.lower()

        bot_api.block(43)
        blocked = await telegram.deliver("43", reply)
        assert blocked.status is Status.UNREACHABLE

        # Not an image at all: Telegram cannot process it, and that is final.
        not_png = await telegram.deliver(
            "42", Reply("图表", photo=chart(tmp_path, "bad.png", data=b"<svg/>"))
        )
        assert not_png.status is Status.FAILED and "image_process_failed" in not_png.error.lower()

        # A missing file, or a path out of DATA_DIR, fails before anything is sent.
        (tmp_path.parent / "outside.png").write_bytes(PNG)
        for broken in (Attachment("x.png", "surveys/7/none/x.png"), Attachment("o.png", "../outside.png")):
            failed = await telegram.deliver("44", Reply("图表", photo=broken))
            assert failed.status is Status.FAILED and "attachment" in failed.error
        assert bot_api.sent_to(44) == []
        assert bot_api.sent_to(42) == []

        assert (await telegram.deliver("42", reply)).status is Status.SENT
        assert [s.photo for s in bot_api.sent_to(42)] == [Upload("q1.png", PNG)]


# -- the web chat ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def web_chat(deps: Deps, data_dir: Path) -> AsyncIterator[tuple[WebChat, str]]:
    """The web chat alone on a free port, over real HTTP (the channel as the app mounts it)."""
    chat = WebChat(deps, wake=lambda: None, demo=False, data_dir=data_dir)
    app = web.Application()
    app[DEFAULT_LOCALE] = deps.default_locale
    chat.add_routes(app)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield chat, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def cookie_of(browser: aiohttp.ClientSession) -> str:
    return next(c.value for c in browser.cookie_jar if c.key == COOKIE)


async def test_the_web_chat_shows_a_photo_only_to_its_chat_and_never_outside_data_dir(
    deps: Deps, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await load_example_school(sessionmaker)
    data_dir = tmp_path / "data"
    photo = chart(data_dir)
    chart(data_dir, "q2.png")  # a file of the same survey that was never sent to this chat
    (tmp_path / "secret.png").write_bytes(PNG)  # outside DATA_DIR
    (data_dir / "surveys" / "7" / "0a1b2c3d" / "link.png").symlink_to(tmp_path / "secret.png")
    parent = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        async with web_chat(deps, data_dir) as (chat, base):
            for browser in (parent, other):
                async with browser.get(f"{base}/chat") as page:
                    assert page.status == 200
            async with parent.ws_connect(f"{base}/chat/ws") as ws:
                code = await parent_code(sessionmaker, "S2026101", notice_accepted=True)
                await ws.send_json({"type": "text", "text": f"/start {code}"})
                assert "曹若曦" in (await ws.receive_json(timeout=10))["text"]
                chat_id = cookie_of(parent)
                delivered = await chat.deliver(chat_id, Reply("<b>满意度</b>", BUTTONS, photo=photo))
                assert delivered.status is Status.SENT
                pushed = await ws.receive_json(timeout=10)
            assert pushed["text"] == "<b>满意度</b>" and pushed["buttons"][0][0]["payload"] == "survey:7"
            assert pushed["photo"]["name"] == "q1.png" and "path" not in pushed["photo"]
            assert "document" not in pushed
            url = base + pushed["photo"]["url"]

            async with parent.get(url) as got:
                assert got.status == 200 and await got.read() == PNG
                assert got.headers["Content-Type"] == "image/png"
                assert got.headers["Content-Disposition"].startswith("inline;")
                assert got.headers["X-Content-Type-Options"] == "nosniff"
            async with other.get(url) as refused:  # another browser, same link
                assert refused.status == 404
            async with aiohttp.ClientSession() as nobody, nobody.get(url) as refused:
                assert refused.status == 404
            # The link names one file: the same signature does not open its neighbour.
            async with parent.get(url.replace("q1.png", "q2.png")) as refused:
                assert refused.status == 404

            # Even a link we signed ourselves serves nothing outside DATA_DIR.
            for escape in ("surveys/7/0a1b2c3d/link.png", str(tmp_path / "secret.png"), "surveys/7/none.png"):
                async with parent.get(base + chat.file_url(chat_id, escape)) as refused:
                    assert refused.status == 404, escape
            # Files under attachments/ keep their own rule on top: only a notice's recipients or a
            # child's guardians, so a signed link to some other attachment still opens nothing.
            (data_dir / "attachments" / "f00d").mkdir(parents=True)
            (data_dir / "attachments" / "f00d" / "menu.pdf").write_bytes(b"%PDF-1.4")
            async with parent.get(base + chat.file_url(chat_id, "attachments/f00d/menu.pdf")) as refused:
                assert refused.status == 404

            # A document under a survey's folder (e.g. an export) is a download, never inline.
            export = chart(data_dir, "结果.xlsx", data=b"PK\x03\x04 xlsx")
            frame = chat._frame(chat_id, Reply("导出", document=export))
            assert frame["document"]["name"] == "结果.xlsx" and "photo" not in frame
            async with parent.get(base + frame["document"]["url"]) as got:
                assert got.status == 200 and await got.read() == b"PK\x03\x04 xlsx"
                assert got.headers["Content-Disposition"].startswith("attachment;")
    finally:
        await parent.close()
        await other.close()


# -- a real browser -------------------------------------------------------------------------------


@pytest.mark.browser
async def test_a_browser_shows_the_chart_inline(tmp_path: Path) -> None:
    path = chromium_path()
    require(path is not None, "Chromium not found (install chromium, or set CHROMIUM_PATH)")
    assert path is not None
    async with live_app(tmp_path, demo=True) as app, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, headless=True, args=LAUNCH_ARGS)
        try:
            page = await phone_page(browser)
            await page.goto(f"{app.base}/chat")
            await pick(page, "曹若曦的母亲 董静 (一年级(1)班)")
            await expect(last_bot(page)).to_contain_text("您好，董静")
            async with app.sessionmaker() as session:
                mother = await session.scalar(select(Person.id).where(Person.name == "董静"))
            assert mother is not None
            reply = Reply("<b>满意度</b>", photo=chart(tmp_path))
            await queue_reply(app.sessionmaker, await account_of(app, mother), reply)

            image = last_bot(page).locator("img.photo")
            await expect(image).to_have_attribute("alt", "q1.png")
            await expect(last_bot(page)).to_contain_text("满意度")
            await page.wait_for_function("document.querySelector('img.photo')?.complete")
            assert await image.evaluate("img => img.naturalWidth") == 1  # served, allowed and decoded
            assert await image.evaluate("img => getComputedStyle(img).maxWidth") == "100%"
        finally:
            await browser.close()
