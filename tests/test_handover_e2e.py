"""The handover on Telegram, over real HTTP to the fake Bot API: attendance, a handover to the
listed grandmother, and the parent's message arriving with the adult's name, relation and time."""

from __future__ import annotations

import re

import pytest

from handlers.dispatch import Deps
from tests.fakebotapi import FakeBotApi
from tests.school import parent_code, person_code
from tests.telegram_app import School, running_app
from tests.test_agreements import placed_parent, read_all
from tests.test_enrollment_e2e import message_with, press, say

pytestmark = pytest.mark.e2e

STAFF, MOTHER = 6001, 6002


def button_under(fake: FakeBotApi, chat: int, fact: str, prefix: str) -> str:
    """A button under the latest message to `chat` that mentions `fact` (staff may get several)."""
    message = next(m for m in reversed(fake.sent_to(chat)) if fact in m.text)
    return next(b["callback_data"] for b in message.buttons if b.get("callback_data", "").startswith(prefix))


async def test_attendance_and_handover_on_telegram(school: School, fake: FakeBotApi, tmp_path, links):
    # Applying, placement and signing have their own stories; here they are the starting point.
    deps = Deps(sessionmaker=school.sessionmaker, links=links)
    parent, app_id = await placed_parent(deps, school.sessionmaker)
    await read_all(parent, app_id)
    await parent.press(f"g:s:{app_id}")
    await parent.say("董静")
    await parent.say("/pickup")
    await parent.press("k:add:1")
    for text in ("王秀兰", "外婆", "1234"):
        await parent.say(text)
    staff_code = await person_code(school.sessionmaker, "teacher", "T005", notice_accepted=True)
    # her Telegram chat too
    mother_code = await parent_code(school.sessionmaker, "S2026101", notice_accepted=True)

    async with running_app(school, fake, tmp_path):
        await say(fake, MOTHER, f"/start {mother_code}")
        await say(fake, STAFF, f"/start {staff_code}")
        roster = await say(fake, STAFF, "/today")
        assert "曹若曦" in roster and "未考勤" in roster
        await message_with(fake, STAFF, "艺术社团")  # 刘洋 is on duty with two groups: two rosters
        await press(fake, STAFF, button_under(fake, STAFF, "曹若曦", "h:ap:"))
        assert "在校" in fake.sent_to(STAFF)[-1].text
        await press(fake, STAFF, button_under(fake, STAFF, "曹若曦", "h:c:"))
        assert "已交接" in await press(fake, STAFF, button_under(fake, STAFF, "交给谁", "h:h:"))

        told = await message_with(fake, MOTHER, "接走")
        assert "曹若曦" in told and "王秀兰" in told and "外婆" in told and "刘洋" in told
        assert re.search(r"\d\d:\d\d", told)
