"""Feedback: a monthly round per service group (a rating and an optional comment) that parents may
decline or turn off, and /feedback for a comment at any time, with one's name or anonymously."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

import messages
from bot import surveys as survey_jobs
from storage import surveys
from storage.models import Application, Feedback, Outbox, PlatformAccount, Survey
from tests.dialog import Chat, text_of
from tests.school import parent_code, person_code
from tests.test_agreements import placed_parent

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST_OF_MONTH = datetime(2026, 12, 1, 18, 0, tzinfo=SHANGHAI)


async def texts_to(sessionmaker, chat: Chat) -> list[str]:
    async with sessionmaker() as session:
        account = select(PlatformAccount.id).where(PlatformAccount.external_id == chat.user_id)
        rows = await session.scalars(select(Outbox).where(Outbox.account_id.in_(account)).order_by(Outbox.id))
        return [r.payload["text"] for r in rows]


async def group_of_three(deps, sessionmaker):
    """Three children placed in one group (the first through the real steps, two more alike)."""
    first, _ = await placed_parent(deps, sessionmaker)
    async with sessionmaker.begin() as session:
        app = await session.get(Application, 1)
        for student_id in (2, 3):
            session.add(
                Application(
                    school_id=app.school_id,
                    student_id=student_id,
                    applicant_person_id=app.applicant_person_id,
                    terms_version_id=app.terms_version_id,
                    term=app.term,
                    status="placed",
                    weekdays=app.weekdays,
                    applied_at=app.applied_at,
                    group_id=app.group_id,
                )
            )
    second = Chat(deps, user_id="parent-102")
    await second.say(f"/start {await parent_code(sessionmaker, 'S2026102')}")
    third = Chat(deps, user_id="parent-103")
    await third.say(f"/start {await parent_code(sessionmaker, 'S2026103')}")
    committee = Chat(deps, user_id="committee")
    await committee.say(f"/start {await person_code(sessionmaker, 'committee', 'C001')}")
    return first, second, third, committee


async def test_a_monthly_round_asks_each_group_once_and_respects_those_who_said_no(
    deps, sessionmaker, tmp_path
):
    first, second, third, _committee = await group_of_three(deps, sessionmaker)
    # The third parent turns feedback rounds off: she is not asked.
    await third.say("/feedback")
    assert "已关闭" in text_of(await third.press("f:r:0"))

    with time_machine.travel(FIRST_OF_MONTH, tick=False):
        assert await survey_jobs.start_feedback_rounds(sessionmaker, FIRST_OF_MONTH, days=7) == 1
        assert (
            await survey_jobs.start_feedback_rounds(sessionmaker, FIRST_OF_MONTH, days=7) == 0
        )  # once a month
        await survey_jobs.tick(sessionmaker, FIRST_OF_MONTH, tmp_path)
    async with sessionmaker() as session:
        round_ = (await session.scalars(select(Survey).where(Survey.kind == "feedback"))).one()
    assert any("满意度" in t or round_.title in t for t in await texts_to(sessionmaker, first))
    assert not any(round_.title in t for t in await texts_to(sessionmaker, third))

    with time_machine.travel(FIRST_OF_MONTH.replace(hour=20), tick=False):
        question = await first.press(f"v:o:{round_.id}")
        assert "总体满意度" in text_of(question) and "一年级作业辅导" in text_of(question)
        await first.press(f"v:a:{round_.id}:1:5")
        assert "谢谢" in text_of(await first.say("老师很耐心"))
        await second.press(f"v:o:{round_.id}")
        await second.press(f"v:a:{round_.id}:1:3")
        await second.press(f"v:s:{round_.id}:2")
        # Rounds never remind: there are no reminder hours.
        assert round_.reminder_hours == []

    async with sessionmaker() as session:
        trends = await surveys.feedback_trends(session, round_.school_id)
    assert [(t.month, t.group, t.respondents, t.mean, t.hidden) for t in trends] == [
        ("2026-12", "一年级作业辅导", 2, None, True)  # two answers: too few to show a mean
    ]


async def test_a_comment_anonymous_or_named_reaches_the_committee(deps, sessionmaker):
    first, second, _third, committee = await group_of_three(deps, sessionmaker)
    await first.say("/feedback")
    asked = await first.press("f:a")
    assert "匿名" in text_of(asked)
    assert "谢谢" in text_of(await first.say("接孩子时校门口太拥挤"))
    await second.say("/feedback")
    await second.press("f:n")
    await second.say("希望增加阅读时间")

    told = await texts_to(sessionmaker, committee)
    assert any("匿名家长" in t and "校门口太拥挤" in t for t in told)
    assert any("冯丽娟" in t and "阅读时间" in t for t in told)
    async with sessionmaker() as session:
        rows = list(await session.scalars(select(Feedback).order_by(Feedback.id)))
        comments = await surveys.feedback_comments(session, rows[0].school_id)
    assert rows[0].person_id is None and rows[1].person_id is not None
    assert [(c.who, c.group) for c in comments] == [("冯丽娟", "一年级作业辅导"), ("", "一年级作业辅导")]


async def test_a_forged_group_in_a_feedback_button_is_refused(deps, sessionmaker):
    first, *_ = await group_of_three(deps, sessionmaker)
    await first.say("/feedback")
    for forged in ("g:a:999", "g:x:1", "g:a:-1", "g:a:99999999999", "zz", "r:2"):
        assert text_of(await first.press(f"f:{forged}")) == messages.render("button_invalid", "zh_CN")
    async with sessionmaker() as session:
        assert not list(await session.scalars(select(Feedback)))
