"""A real headless Chromium against the real app: the demo web chat and the public terms page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, ViewportSize, async_playwright, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.dialog import Links
from storage import outbox
from storage.models import (
    AccountBinding,
    Guardianship,
    Person,
    PersonRole,
    Role,
    School,
    SchoolClass,
    Student,
)
from tests.parts import chromium_path, require
from tests.school import parent_code
from tests.test_webchat import LiveApp, live_app

pytestmark = pytest.mark.browser

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PHONE: ViewportSize = {"width": 360, "height": 740}
MARKUP_NAME = "<b>&</b>"


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


async def phone_page(browser: Browser, locale: str = "zh-CN") -> Page:
    context = await browser.new_context(viewport=PHONE, locale=locale)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    return page


async def no_horizontal_scroll(page: Page) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def pick(page: Page, label: str) -> None:
    await page.locator("#personas button.persona", has_text=label).first.click()
    await expect(page.locator("#current-name")).to_have_text(label)


def last_bot(page: Page) -> Locator:
    return page.locator("#messages .msg.bot").last


async def test_demo_chat_persona_terms_and_language_button(chromium: Browser, tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=True) as app:
        page = await phone_page(chromium)
        await page.goto(f"{app.base}/chat")
        await expect(page.locator("#demo-note")).to_be_visible()
        await expect(page.locator("#chat")).to_be_hidden()

        await pick(page, "曹若曦的母亲 董静 (一年级(1)班)")
        await expect(last_bot(page)).to_contain_text("您好，董静")
        await expect(last_bot(page)).to_contain_text("曹若曦")

        await page.fill("#input", "/terms")
        await page.press("#input", "Enter")
        await expect(page.locator("#messages .msg.me").last).to_have_text("/terms")
        await expect(last_bot(page)).to_contain_text("每月 200 元")
        await expect(last_bot(page).locator("a.btn")).to_have_attribute("href", f"{app.base}/terms/1")
        assert await no_horizontal_scroll(page)
        await page.screenshot(path=str(tmp_path / "chat.png"))

        # A button under an earlier message: the greeting's menu, then language, then English.
        greeting = page.locator("#messages .msg.bot", has_text="您好，董静")
        await greeting.get_by_role("button", name="菜单").click()
        await last_bot(page).get_by_role("button", name="语言 / Language").click()
        await last_bot(page).get_by_role("button", name="English").click()
        await expect(last_bot(page)).to_have_text("Language set to English.")
        await page.fill("#input", "/help")
        await page.click("#send")
        await expect(last_bot(page)).to_contain_text("What I can do")

        # Switching identity gives a fresh chat as someone else.
        await page.click("#switch")
        await expect(page.locator("#personas")).to_be_visible()
        await pick(page, "周校长 (学校管理员)")
        await expect(page.locator("#messages .msg")).to_have_count(2)  # /start and the greeting
        await expect(last_bot(page)).to_contain_text("您好，周校长")


async def test_terms_page_on_a_phone(chromium: Browser, tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=True) as app:
        page = await phone_page(chromium)
        response = await page.goto(f"{app.base}/terms")
        assert response is not None and response.status == 200
        await expect(page.locator("#terms-title")).to_have_text("阳光实验小学课后服务实施方案")
        await expect(page.locator("#fee-month")).to_contain_text("200")
        await expect(page.locator("main")).to_contain_text("2026-09-01")  # in the school's time zone
        assert await no_horizontal_scroll(page)
        await page.screenshot(path=str(tmp_path / "terms.png"), full_page=True)

        await page.click("#lang-switch")
        await expect(page.locator("#fees")).to_have_text("Fees")
        assert "lang=en" in page.url
        assert await no_horizontal_scroll(page)
        await page.click("#lang-switch")
        await expect(page.locator("#fees")).to_have_text("收费标准")

        missing = await page.goto(f"{app.base}/terms/999")
        assert missing is not None and missing.status == 404
        await expect(page.locator("#no-terms")).to_have_text("没有找到该版本。")
        assert await no_horizontal_scroll(page)


async def add_pupil_with_markup_name(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """A class whose first pupil is called <b>&</b>, with a guardian 王<i>明; returns the guardian."""
    async with sessionmaker.begin() as session:
        school = await session.scalar(select(School).where(School.code == "sunshine"))
        assert school is not None
        cls = SchoolClass(school_id=school.id, grade="三年级", name="三年级(1)班")
        session.add(cls)
        await session.flush()
        pupil = Student(school_id=school.id, class_id=cls.id, student_no="S2026501", name=MARKUP_NAME)
        guardian = Person(school_id=school.id, person_no="S2026501-G1", name="王<i>明")
        session.add_all([pupil, guardian])
        await session.flush()
        session.add_all(
            [
                PersonRole(school_id=school.id, person_id=guardian.id, role=Role.PARENT.value),
                Guardianship(
                    school_id=school.id,
                    student_id=pupil.id,
                    person_id=guardian.id,
                    relation="母亲",
                    position=1,
                ),
            ]
        )
        return guardian.id


async def account_of(app: LiveApp, person_id: int) -> int:
    async with app.sessionmaker() as session:
        found = await session.scalar(
            select(AccountBinding.account_id)
            .where(AccountBinding.person_id == person_id)
            .order_by(AccountBinding.id.desc())
        )
    assert found is not None
    return found


async def test_names_and_html_from_the_server_render_as_text(chromium: Browser, tmp_path: Path) -> None:
    async with live_app(tmp_path, demo=True) as app:
        guardian = await add_pupil_with_markup_name(app.sessionmaker)
        page = await phone_page(chromium)
        await page.goto(f"{app.base}/chat")
        label = f"{MARKUP_NAME}的母亲 王<i>明 (三年级(1)班)"
        await expect(page.locator("#personas button.persona", has_text=label)).to_have_count(1)
        await pick(page, label)

        greeting = last_bot(page)
        await expect(greeting).to_contain_text(f"您绑定的孩子：{MARKUP_NAME}（三年级(1)班，母亲）")
        bold = await greeting.locator("b").all_text_contents()
        assert "王<i>明" in bold and MARKUP_NAME in bold
        assert await greeting.locator("b b, i").count() == 0

        # Defence in depth: even raw HTML in a message (here put straight into the outbox)
        # shows only the allowed tags, and everything else as text.
        raw = (
            '<script>window.pwned = 1</script><img src="x" onerror="window.pwned = 2">'
            '<b>bold</b> <a href="javascript:window.pwned = 3">bad</a> '
            '<a href="https://example.org/">good</a> <i onclick="x()">it</i>'
        )
        async with app.sessionmaker.begin() as session:
            await outbox.enqueue(session, await account_of(app, guardian), {"text": raw, "buttons": []})
        pushed = last_bot(page)
        await expect(pushed).to_contain_text("<script>window.pwned = 1</script>")
        await expect(pushed).to_contain_text('<img src="x" onerror="window.pwned = 2">')
        assert await pushed.locator("script, img, [onerror], [onclick]").count() == 0
        assert await pushed.locator("b").all_text_contents() == ["bold"]
        assert await pushed.locator("i").all_text_contents() == ["it"]
        links = pushed.locator("a")
        assert await links.count() == 1
        await expect(links).to_have_attribute("href", "https://example.org/")
        await expect(pushed).to_contain_text('<a href="javascript:window.pwned = 3">bad</a>')
        assert await page.evaluate("window.pwned === undefined")
        await page.screenshot(path=str(tmp_path / "markup.png"))


async def test_an_invite_link_opens_the_chat_and_binds(chromium: Browser, tmp_path: Path) -> None:
    """Without Telegram, Links.invite points at /chat?start=CODE: one tap and the parent is in."""
    async with live_app(tmp_path, demo=False) as app:
        code = await parent_code(app.sessionmaker, "S2026103", notice_accepted=True)
        page = await phone_page(chromium, locale="en-US")
        await page.goto(Links(app.base).invite(code))
        await expect(page.locator("#messages .msg.me").first).to_have_text(f"/start {code}")
        await expect(last_bot(page)).to_contain_text("You are linked!")
        await expect(last_bot(page)).to_contain_text("王子轩")
        assert "start=" not in page.url  # the spent code leaves the address bar
        assert await page.locator("#personas").count() == 0
        assert await no_horizontal_scroll(page)
