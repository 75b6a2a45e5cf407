"""The enrollment story on Telegram, over real HTTP to the fake Bot API, in English for the parent:
a parent applies, the class teacher approves, the admin approves and places, the parent sees the group."""

from __future__ import annotations

import pytest

from tests.fakebotapi import FakeBotApi
from tests.school import parent_code, person_code
from tests.telegram_app import School, running_app
from tests.test_enrollment_flow import setup_groups

pytestmark = pytest.mark.e2e

PARENT, TEACHER, ADMIN = 5001, 5002, 5003


def buttons(fake: FakeBotApi, chat: int) -> list[str]:
    return [b["callback_data"] for b in fake.sent_to(chat)[-1].buttons if b.get("callback_data")]


async def press(fake: FakeBotApi, chat: int, data: str) -> str:
    count = len(fake.messages_to(chat))
    fake.push_callback(chat, data)
    return (await fake.wait_for_messages(chat, count + 1))[-1]


async def message_with(fake: FakeBotApi, chat: int, fact: str) -> str:
    """The latest message to `chat` containing `fact`, waiting for it (outbox messages come later)."""
    found = await fake.wait_for(lambda: [m for m in fake.messages_to(chat) if fact in m])
    return str(found[-1])


async def say(fake: FakeBotApi, chat: int, text: str, language: str = "zh-hans") -> str:
    count = len(fake.messages_to(chat))
    fake.push_text(chat, text, language_code=language)
    return (await fake.wait_for_messages(chat, count + 1))[-1]


async def test_apply_review_approve_place_on_telegram(school: School, fake: FakeBotApi, tmp_path):
    await setup_groups(school.sessionmaker)
    codes = {
        PARENT: await parent_code(school.sessionmaker, "S2026101", notice_accepted=True),
        TEACHER: await person_code(school.sessionmaker, "teacher", "T001", notice_accepted=True),
        ADMIN: await person_code(school.sessionmaker, "admin", "A001", notice_accepted=True),
    }
    async with running_app(school, fake, tmp_path):
        for chat, code in codes.items():
            await say(fake, chat, f"/start {code}", "en" if chat == PARENT else "zh-hans")

        assert "Step 1" in await say(fake, PARENT, "/apply", "en")
        for data in ("a:n", "a:n", "a:v:reading", "a:n", "a:n"):
            await press(fake, PARENT, data)
        summary = await press(fake, PARENT, "a:w:n")
        assert "Total for" in summary and "200" in summary  # five days a week: capped at 200
        assert "a:ok" in buttons(fake, PARENT)
        assert "submitted" in await press(fake, PARENT, "a:ok")

        request = await message_with(fake, TEACHER, "新的课后服务申请")
        assert "曹若曦" in request
        approve = next(b for b in buttons(fake, TEACHER) if b.startswith("r:ok:"))
        assert "已处理" in await press(fake, TEACHER, approve)

        await message_with(fake, ADMIN, "待学校核准")
        assert "已处理" in await press(
            fake, ADMIN, next(b for b in buttons(fake, ADMIN) if b.startswith("r:sa:"))
        )

        proposal = await say(fake, ADMIN, "/place")
        assert "二年级经典阅读" in proposal or "一年级作业辅导" in proposal
        await press(fake, ADMIN, next(b for b in buttons(fake, ADMIN) if b.startswith("q:ok:")))

        placed = [
            m
            for m in await fake.wait_for(lambda: [m for m in fake.messages_to(PARENT) if "is placed in" in m])
        ]
        assert "曹若曦" in placed[0]
        status = await say(fake, PARENT, "/status", "en")
        assert "placed" in status and "Group:" in status
