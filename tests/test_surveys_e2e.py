"""The committee member's Telegram chat when a survey closes, over real HTTP to the fake Bot API:
the summary, a PNG per chart question (sendPhoto) and the XLSX (sendDocument), whose numbers are
the answers the parents gave."""

from __future__ import annotations

import io
from datetime import timedelta

import openpyxl
import pytest

from bot import surveys as survey_jobs
from handlers.dispatch import Deps
from storage import notices, surveys
from storage.clock import utcnow
from storage.models import School as SchoolRow
from tests.dialog import Chat
from tests.fakebotapi import FakeBotApi
from tests.school import parent_code, person_code
from tests.telegram_app import School, running_app
from tests.test_enrollment_e2e import message_with, say

pytestmark = pytest.mark.e2e

COMMITTEE = 7001


async def test_the_committee_gets_charts_and_the_spreadsheet_on_telegram(
    school: School, fake: FakeBotApi, tmp_path, links
):
    deps = Deps(sessionmaker=school.sessionmaker, links=links)
    now = utcnow()
    async with school.sessionmaker.begin() as session:
        row = await session.get(SchoolRow, 1)
        spec = surveys.parse_spec(
            {
                "title": "秋游去哪里",
                "audience": "class:一年级(1)班",
                "opens": notices.local(now + timedelta(minutes=1), row).strftime("%Y-%m-%d %H:%M"),
                "closes": notices.local(now + timedelta(minutes=3), row).strftime("%Y-%m-%d %H:%M"),
                "questions": [
                    {"text": "目的地", "type": "single", "options": ["植物园", "科技馆"]},
                    {"text": "满意度", "type": "rating"},
                ],
            }
        )
        survey = await surveys.schedule_survey(session, row, spec, now)
    committee_code = await person_code(school.sessionmaker, "committee", "C001", notice_accepted=True)
    parents = []
    for number in ("S2026101", "S2026102", "S2026103"):
        chat = Chat(deps, user_id=f"parent-{number}")
        await chat.say(f"/start {await parent_code(school.sessionmaker, number, notice_accepted=True)}")
        parents.append(chat)
    await survey_jobs.tick(school.sessionmaker, now + timedelta(minutes=2), tmp_path)
    for chat, (place, rating) in zip(parents, [(0, 5), (1, 4), (0, 4)], strict=True):
        await chat.press(f"v:o:{survey.id}")
        await chat.press(f"v:a:{survey.id}:1:{place}")
        await chat.press(f"v:a:{survey.id}:2:{rating}")

    async with running_app(school, fake, tmp_path):
        await say(fake, COMMITTEE, f"/start {committee_code}")
        await survey_jobs.tick(school.sessionmaker, now + timedelta(minutes=4), tmp_path)
        summary = await message_with(fake, COMMITTEE, "问卷结果")
        assert "提交 3 份" in summary

        def uploads() -> list | None:
            found = [m for m in fake.sent_to(COMMITTEE) if m.photo or m.document]
            return found if len(found) >= 3 else None

        files = await fake.wait_for(uploads)
    photos = [m for m in files if m.photo]
    assert [p.photo.filename for p in photos] == ["q1.png", "q2.png"]
    assert all(p.photo.data.startswith(b"\x89PNG") for p in photos) and "目的地" in photos[0].text
    book = next(m.document for m in files if m.document)
    assert book.filename.endswith(".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(book.data)).worksheets[1]
    rows = list(sheet.iter_rows(values_only=True))[1:]
    assert sorted((r[-2], r[-1]) for r in rows) == [("植物园", 4), ("植物园", 5), ("科技馆", 4)]
