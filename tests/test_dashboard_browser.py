"""The committee dashboard in a real headless Chromium, on a phone-sized screen.

The first test runs the whole app (bot.app.serve, the demo web chat): the committee member asks
for the link in the chat and follows it. The others serve the dashboard on the test database of
each kind (SQLite and PostgreSQL).
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import openpyxl
import pytest
from playwright.async_api import Browser, Page, expect

import messages
from storage.clock import utcnow
from tests.test_browser import chromium, last_bot, no_horizontal_scroll, phone_page, pick
from tests.test_dashboard import (
    INVITED,
    SCHOOL_A,
    SCHOOL_B,
    Site,
    chat_as,
    issue,
    link_from_chat,
    seed_survey,
    site,
)
from tests.test_webchat import live_app

pytestmark = pytest.mark.browser
__all__ = ["chromium", "site"]  # fixtures used by name

COMMITTEE_PERSONA = "郑晓燕 (家委会成员)"


async def chart_loaded(page: Page) -> bool:
    """The first chart image arrived and decoded (a broken image has naturalWidth 0)."""
    await expect(page.locator("img.chart").first).to_be_visible()
    handle = await page.wait_for_function(
        "() => { const i = document.querySelector('img.chart'); return i && i.complete && i.naturalWidth; }"
    )
    return int(await handle.json_value()) > 0


async def test_committee_signs_in_from_the_chat_sees_a_chart_and_downloads_xlsx(
    chromium: Browser, tmp_path: Path
) -> None:
    async with live_app(tmp_path, demo=True) as app:
        survey_id = await seed_survey(app.sessionmaker, SCHOOL_A)
        chat = await phone_page(chromium)
        await chat.goto(f"{app.base}/chat")
        await pick(chat, COMMITTEE_PERSONA)
        await chat.fill("#input", "/dashboard")
        await chat.press("#input", "Enter")
        button = last_bot(chat).locator("a.btn")
        await expect(button).to_have_count(1)
        link = await button.get_attribute("href")
        assert link and link.startswith(f"{app.base}/dashboard/login?token=")

        page = await phone_page(chromium)
        await page.goto(link)
        assert "token=" not in page.url  # the spent token leaves the address bar
        await expect(page.locator("h1")).to_have_text("问卷与反馈")
        await expect(page.locator("#who")).to_contain_text("郑晓燕")
        row = page.locator(f'tr[data-survey="{survey_id}"]')
        await expect(row.locator(".rate")).to_have_text("62%")
        assert await no_horizontal_scroll(page)
        await page.screenshot(path=str(tmp_path / "dashboard.png"))

        await row.locator("a").click()
        await expect(page.locator("#survey-title")).to_have_text("课后服务满意度调查")
        assert await chart_loaded(page)
        assert await no_horizontal_scroll(page)
        await page.screenshot(path=str(tmp_path / "dashboard-survey.png"), full_page=True)

        async with page.expect_download() as info:
            await page.click("#download-xlsx")
        download = await info.value
        assert download.suggested_filename.startswith(f"survey-{survey_id}-")
        book = openpyxl.load_workbook(io.BytesIO((await download.path()).read_bytes()))
        summary = {row[0]: row[1] for row in book.worksheets[0].iter_rows(values_only=True) if row[0]}
        assert summary[messages.label("export.respondents", "zh_CN")] == 5
        assert summary[messages.label("export.invited", "zh_CN")] == INVITED

        # The same link in another browser: refused, and nothing of the school shows.
        other = await phone_page(chromium)
        response = await other.goto(link)
        assert response is not None and response.status == 403
        await expect(other.locator("#message")).to_contain_text("已经使用过")
        assert await other.locator("#surveys, #who").count() == 0

        await page.click("#sign-out")
        await expect(page.locator("#message")).to_contain_text("已退出登录")
        response = await page.goto(f"{app.base}/dashboard")
        assert response is not None and response.status == 401


async def test_expired_and_reused_links_are_refused(chromium: Browser, site: Site) -> None:
    expired = await issue(site, SCHOOL_A, "C001", now=utcnow() - timedelta(minutes=16))
    page = await phone_page(chromium, locale="en-US")
    response = await page.goto(expired)
    assert response is not None and response.status == 403
    await expect(page.locator("#message")).to_contain_text("has expired")
    assert await page.locator("#who").count() == 0

    fresh = await issue(site, SCHOOL_A, "C001")
    await page.goto(fresh)
    await expect(page.locator("#who")).to_contain_text("郑晓燕")
    again = await phone_page(chromium, locale="en-US")
    response = await again.goto(fresh)
    assert response is not None and response.status == 403
    await expect(again.locator("#message")).to_contain_text("used already")


async def test_committee_member_of_school_b_cannot_see_school_a(chromium: Browser, site: Site) -> None:
    a_survey = await seed_survey(site.sessionmaker, SCHOOL_A, title="阳光学校的问卷")
    b_survey = await seed_survey(site.sessionmaker, SCHOOL_B, title="河畔学校的问卷")
    link = await link_from_chat(await chat_as(site, "committee", "C001", school=SCHOOL_B))
    page = await phone_page(chromium)
    await page.goto(link)
    await expect(page.locator("#who")).to_contain_text("河畔小学")
    await expect(page.locator(f'tr[data-survey="{b_survey}"]')).to_contain_text("河畔学校的问卷")
    await expect(page.locator(f'tr[data-survey="{a_survey}"]')).to_have_count(0)

    response = await page.goto(f"{site.base}/dashboard/surveys/{a_survey}")
    assert response is not None and response.status == 404
    await expect(page.locator("#message")).to_contain_text("没有找到")
    await expect(page.locator("body")).not_to_contain_text("阳光学校的问卷")

    await page.goto(f"{site.base}/dashboard/surveys/{b_survey}")
    assert await chart_loaded(page)  # its own school's survey works in the same session


async def test_a_survey_is_scheduled_from_the_form_on_a_phone(
    chromium: Browser, site: Site, tmp_path: Path
) -> None:
    page = await phone_page(chromium)
    await page.goto(await issue(site, SCHOOL_A, "C001"))
    await page.click("#new-survey")
    assert await no_horizontal_scroll(page)
    await page.fill("#q1_text", "午餐分量够吗？")
    await page.fill("#q1_options", "够")  # one option: refused, with the reason, keeping the text
    await page.click("#schedule")
    await expect(page.locator("#form-errors")).to_be_visible()
    await expect(page.locator("#q1_text")).to_have_value("午餐分量够吗？")
    await page.screenshot(path=str(tmp_path / "dashboard-form.png"), full_page=True)

    await page.fill("#title", "午餐满意度")
    await page.fill("#q1_options", "够\n不够")
    await page.select_option("#q2_type", "rating")
    await page.fill("#q2_text", "口味打分")
    await page.click("#schedule")
    await expect(page.locator("#created")).to_be_visible()
    await expect(page.locator("#survey-title")).to_have_text("午餐满意度")
