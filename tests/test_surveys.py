"""The survey story: the school schedules the example survey, the scheduler opens it, parents
answer in chat (going back, skipping, changing their minds), those who did not answer are
reminded at most twice, the survey closes and the committee receives charts and an XLSX whose
numbers are the answers given. Nothing stored links an anonymous answer to a parent.
"""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import time_machine
from sqlalchemy import select

import messages
from bot import admin
from bot import surveys as survey_jobs
from bot.demo import prepare_demo
from handlers.dialog import Reply
from storage import surveys
from storage.clock import utcnow
from storage.models import (
    AuditLog,
    ConversationState,
    Outbox,
    PlatformAccount,
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyResponse,
)
from tests.dialog import Chat, payloads, text_of
from tests.school import EXAMPLES, load_example_school, parent_code, person_code

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=SHANGHAI)


async def join(deps, sessionmaker, user: str, *, student: str | None = None, person=None) -> Chat:
    chat = Chat(deps, user_id=user)
    code = await parent_code(sessionmaker, student) if student else await person_code(sessionmaker, *person)
    await chat.say(f"/start {code}")
    return chat


async def outbox_for(sessionmaker, chat: Chat) -> list[dict]:
    async with sessionmaker() as session:
        account = select(PlatformAccount.id).where(PlatformAccount.external_id == chat.user_id)
        rows = await session.scalars(select(Outbox).where(Outbox.account_id.in_(account)).order_by(Outbox.id))
        return [r.payload for r in rows]


async def tick(sessionmaker, moment: datetime, files: Path) -> int:
    with time_machine.travel(moment, tick=False):
        return await survey_jobs.tick(sessionmaker, moment, files)


@pytest.fixture
async def school(deps, sessionmaker):
    await load_example_school(sessionmaker)
    parents = {
        "mother_101": await join(deps, sessionmaker, "p101", student="S2026101"),  # 一年级(1)班
        "mother_102": await join(deps, sessionmaker, "p102", student="S2026102"),  # 一年级(1)班
        "father_103": await join(deps, sessionmaker, "p103", student="S2026103"),  # 一年级(1)班
        "mother_201": await join(deps, sessionmaker, "p201", student="S2026201"),  # 一年级(2)班
        "quiet_202": await join(deps, sessionmaker, "p202", student="S2026202"),  # never answers
        "busy_203": await join(deps, sessionmaker, "p203", student="S2026203"),  # says "not now"
    }
    committee = await join(deps, sessionmaker, "c001", person=("committee", "C001"))
    head = await join(deps, sessionmaker, "a001", person=("admin", "A001"))
    return parents, committee, head


async def answer_all(
    chat: Chat, survey_id: int, rating: int, favourite: int, wishes: list[int], handover: int, text
):
    """Go through the example survey's five questions with the buttons (and a typed answer)."""
    first = await chat.press(f"v:o:{survey_id}")
    assert "1/5" in text_of(first) and f"v:a:{survey_id}:1:5" in payloads(first)
    await chat.press(f"v:a:{survey_id}:1:{rating}")
    await chat.press(f"v:a:{survey_id}:2:{favourite}")
    for option in wishes:
        await chat.press(f"v:t:{survey_id}:3:{option}")
    await chat.press(f"v:n:{survey_id}:3" if wishes else f"v:s:{survey_id}:3")
    last = await chat.press(f"v:a:{survey_id}:4:{handover}")
    assert "5/5" in text_of(last)
    if text is None:
        return await chat.press(f"v:s:{survey_id}:5")
    return await chat.say(text)


async def test_a_survey_from_scheduling_to_the_committees_charts(deps, sessionmaker, school, tmp_path):
    parents, committee, head = school
    files = tmp_path / "data"

    # The school schedules the example survey (anonymous, reminders 48 and 6 hours before closing).
    with time_machine.travel(at(5, 10), tick=False):
        _, survey, people = await admin.schedule_survey_file(sessionmaker, EXAMPLES / "survey.yaml")
    assert survey.status == "scheduled" and survey.anonymous and people > 80
    sid = survey.id

    # Nothing happens before the opening time; at 08:00 on the 7th the invitations go out.
    assert await tick(sessionmaker, at(7, 7, 59), files) == 0
    assert await tick(sessionmaker, at(7, 8, 0), files) == 1
    invitation = (await outbox_for(sessionmaker, parents["mother_101"]))[-1]
    assert "课后服务满意度调查" in invitation["text"] and "匿名" in invitation["text"]
    assert [b["payload"] for b in invitation["buttons"][0]] == [f"v:o:{sid}", f"v:x:{sid}"]

    with time_machine.travel(at(8, 19), tick=False):
        # The first mother answers everything, ticking two wishes and writing a comment.
        done = await answer_all(parents["mother_101"], sid, 5, 0, [0, 2], 0, "希望增加编程课")
        assert "谢谢" in text_of(done) and "12-14 20:00" in text_of(done)
        # The second skips the optional questions.
        await answer_all(parents["mother_102"], sid, 4, 2, [], 1, None)
        # The father goes back from question 2 to change his rating from 2 to 3.
        father = parents["father_103"]
        await father.press(f"v:o:{sid}")
        await father.press(f"v:a:{sid}:1:2")
        back = await father.press(f"v:q:{sid}:1")
        assert "1/5" in text_of(back) and "2" in text_of(back)
        await answer_all(father, sid, 3, 2, [2], 1, "交接时希望老师多等几分钟")
        # A required question cannot be skipped, and a forged option is refused.
        refused = await father.press(f"v:s:{sid}:1")
        assert text_of(refused) == text_of([Reply(messages.render("button_invalid", "zh_CN"))])
        assert "不属于" in text_of(await father.press(f"v:a:{sid}:2:9"))
        # The mother in class (2) answers, then changes her rating after submitting.
        await answer_all(parents["mother_201"], sid, 2, 1, [4], 3, None)
        again = await parents["mother_201"].say("/survey")
        assert "已提交过" in text_of(again)
        await parents["mother_201"].press(f"v:a:{sid}:1:1")
        # One parent says "not now": no reminders for her.
        assert "不再提醒" in text_of(await parents["busy_203"].press(f"v:x:{sid}"))

    # Reminders: 48 hours and 6 hours before closing, only to those who neither answered nor declined.
    assert await tick(sessionmaker, at(12, 19, 59), files) == 0
    assert await tick(sessionmaker, at(12, 20, 0), files) > 0
    quiet = [p["text"] for p in await outbox_for(sessionmaker, parents["quiet_202"])]
    assert any("提醒（第 1 次" in t for t in quiet)
    for answered in ("mother_101", "mother_102", "father_103", "mother_201", "busy_203"):
        texts = [p["text"] for p in await outbox_for(sessionmaker, parents[answered])]
        assert not any("提醒（第" in t for t in texts), answered
    await tick(sessionmaker, at(14, 14, 0), files)
    await tick(sessionmaker, at(14, 19, 0), files)
    quiet = [p["text"] for p in await outbox_for(sessionmaker, parents["quiet_202"])]
    assert sum("提醒（第" in t for t in quiet) == 2  # never a third

    # At the closing time the committee member and the administrator get the results.
    await tick(sessionmaker, at(14, 20, 0), files)
    for reader in (committee, head):
        sent = await outbox_for(sessionmaker, reader)
        summary = next(p for p in sent if "问卷结果" in p["text"])
        assert "提交 4 份" in summary["text"]
        photos = [p for p in sent if p.get("photo")]
        assert [p["photo"]["filename"] for p in photos] == ["q1.png", "q2.png", "q3.png", "q4.png"]
        assert all((files / p["photo"]["path"]).read_bytes().startswith(b"\x89PNG") for p in photos)
        book = next(p for p in sent if p.get("document"))
    workbook = openpyxl.load_workbook(io.BytesIO((files / book["document"]["path"]).read_bytes()))
    answers = list(workbook.worksheets[1].iter_rows(values_only=True))
    assert len(answers) == 1 + 4  # the header, then one row per response
    ratings = sorted(row[2] for row in answers[1:])  # number, class, Q1 …: no name column
    assert ratings == [1, 3, 4, 5]
    # The counts in the chart data are the answers given.
    async with sessionmaker() as session:
        closed = await session.get(Survey, sid)
        results = await surveys.results(session, closed)
    assert (results.invited, results.respondents) == (closed.invited_people, 4)
    rating, favourite, wishes, _, comments = results.questions
    assert [o.count for o in rating.options] == [1, 0, 1, 1, 1] and rating.mean == pytest.approx(13 / 4)
    assert [o.count for o in favourite.options] == [1, 1, 2, 0, 0]
    assert (wishes.answered, [o.count for o in wishes.options]) == (3, [1, 0, 2, 0, 1])
    assert comments.texts == []  # two comments only: fewer than three are not shown (anonymous)
    # The class with one respondent is not broken down.
    assert {s.segment: s.hidden for s in results.segments} == {"一年级(1)班": False, "一年级(2)班": True}

    # After closing, nobody can answer or change an answer.
    late = await parents["quiet_202"].press(f"v:o:{sid}")
    assert "已截止" in text_of(late)


async def test_nothing_stored_links_an_anonymous_answer_to_a_parent(deps, sessionmaker, school, tmp_path):
    parents, _committee, _head = school
    with time_machine.travel(at(5, 10), tick=False):
        _, survey, _ = await admin.schedule_survey_file(sessionmaker, EXAMPLES / "survey.yaml")
    await tick(sessionmaker, at(7, 8), tmp_path)
    with time_machine.travel(at(8, 9), tick=False):
        await answer_all(parents["mother_101"], survey.id, 5, 0, [1], 0, "很好")
        await answer_all(parents["mother_102"], survey.id, 4, 1, [], 1, None)
        await answer_all(parents["father_103"], survey.id, 3, 2, [], 2, None)
    async with sessionmaker() as session:
        responses = list(await session.scalars(select(SurveyResponse)))
        # While open, the key is an HMAC under a secret that is not in the database.
        assert all(r.person_id is None and r.submitted_at is None for r in responses)
        assert all(len(r.respondent_key or "") == 64 for r in responses)
        assert not await session.scalar(select(ConversationState).limit(1))
    await tick(sessionmaker, at(14, 20, 1), tmp_path)
    async with sessionmaker() as session:
        responses = list(await session.scalars(select(SurveyResponse)))
        assert [r.respondent_key for r in responses] == [None, None, None]  # erased at closing
        answered = set(
            await session.scalars(
                select(SurveyInvitation.person_id).where(SurveyInvitation.responded.is_(True))
            )
        )
        assert len(answered) == 3  # who answered is known (the response rate), not what they answered
        answer_columns = set(SurveyAnswer.__table__.columns.keys())
        response_columns = set(SurveyResponse.__table__.columns.keys())
        assert not {"person_id", "account_id"} & answer_columns
        assert all(r.person_id is None for r in responses) and "account_id" not in response_columns
        audit = list(await session.scalars(select(AuditLog).where(AuditLog.target_type == "survey")))
        assert all(a.actor_person_id is None and a.actor_account_id is None for a in audit)


async def test_a_named_survey_shows_who_answered(deps, sessionmaker, school, tmp_path):
    parents, _committee, _head = school
    spec = surveys.parse_spec(
        {
            "title": "家长会时间",
            "audience": "class:一年级(1)班",
            "opens": "2026-12-07 08:00",
            "closes": "2026-12-08 20:00",
            "questions": [{"text": "哪天方便？", "type": "single", "options": ["周三", "周五"]}],
        }
    )
    async with sessionmaker.begin() as session:
        school_row = await admin.school_for(session, None)
        survey = await surveys.schedule_survey(session, school_row, spec, at(5, 10))
    await tick(sessionmaker, at(7, 8), tmp_path)
    with time_machine.travel(at(7, 9), tick=False):
        await parents["mother_101"].press(f"v:o:{survey.id}")
        await parents["mother_101"].press(f"v:a:{survey.id}:1:1")
        # A parent of another class was not invited: the button is refused.
        assert "不是发给您" in text_of(await parents["mother_201"].press(f"v:o:{survey.id}"))
    async with sessionmaker() as session:
        rows = await surveys.answer_rows(session, await session.get(Survey, survey.id))
        results = await surveys.results(session, await session.get(Survey, survey.id))
    assert [(r.who, r.answers) for r in rows] == [("董静", ["周五"])]
    assert not results.withheld and results.questions[0].options[1].count == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"questions": []}, "bad_value"),
        ({"audience": "class:九年级(9)班"}, "unknown_class"),
        ({"closes": "2026-12-06 20:00"}, "closes_before_opens"),
        ({"reminders": [1, 2, 3]}, "bad_value"),
        ({"questions": [{"text": "?", "type": "single", "options": ["only one"]}]}, "needs_options"),
        ({"questions": [{"text": "?", "type": "rating", "options": ["a", "b"]}]}, "options_not_allowed"),
        ({"colour": "red"}, "unknown_field"),
        ({"opens": "next monday"}, "bad_time"),
    ],
)
async def test_a_bad_survey_file_is_refused_with_the_reason(sessionmaker, change, problem):
    await load_example_school(sessionmaker)
    data = {
        "title": "t",
        "opens": "2026-12-07 08:00",
        "closes": "2026-12-08 20:00",
        "questions": [{"text": "q", "type": "rating"}],
    } | change
    with pytest.raises(surveys.SurveyError) as caught:
        spec = surveys.parse_spec(data)
        async with sessionmaker.begin() as session:
            await surveys.schedule_survey(session, await admin.school_for(session, None), spec, at(5, 10))
    assert caught.value.key == problem


async def test_forged_and_random_survey_buttons_change_nothing(deps, sessionmaker, school, tmp_path):
    """Buttons are only ids: a stranger's, a made-up or a garbled one gets a clear answer, never an
    error, and no answer is stored for anyone who was not invited."""
    parents, committee, _head = school
    with time_machine.travel(at(5, 10), tick=False):
        spec = surveys.parse_spec(
            {
                "title": "一年级(2)班的问卷",
                "audience": "class:一年级(2)班",
                "opens": "2026-12-07 08:00",
                "closes": "2026-12-14 20:00",
                "questions": [
                    {"text": "q", "type": "multiple", "options": ["a", "b"]},
                    {"text": "r", "type": "rating"},
                ],
            }
        )
        async with sessionmaker.begin() as session:
            survey = await surveys.schedule_survey(
                session, await admin.school_for(session, None), spec, at(5, 10)
            )
    await tick(sessionmaker, at(7, 8), tmp_path)
    rng = random.Random(7)
    pieces = [str(survey.id), "1", "2", "0", "-1", "99", "x", "", "1.5", "９", "2147483648", "'; drop"]
    forged = [
        f"v:{rng.choice('oxqnsatz')}" + "".join(":" + rng.choice(pieces) for _ in range(rng.randint(0, 4)))
    ]
    forged += [
        "v:" + "".join(rng.choice("av:0123456789x-") for _ in range(rng.randint(0, 40))) for _ in range(150)
    ]
    forged += [
        f"v:{rng.choice('oxqnsat')}" + "".join(":" + rng.choice(pieces) for _ in range(3)) for _ in range(150)
    ]
    error = messages.render("error", "zh_CN")
    with time_machine.travel(at(8, 9), tick=False):
        for payload in forged:
            for outsider in (parents["mother_101"], committee):  # not in class (2): not invited
                assert text_of(await outsider.press(payload[:64])) != error, payload
    async with sessionmaker() as session:
        assert not list(await session.scalars(select(SurveyResponse)))


async def test_the_demo_opens_the_example_survey_for_its_visitors(sessionmaker, tmp_path):
    await prepare_demo(sessionmaker)
    assert await survey_jobs.tick(sessionmaker, utcnow() + timedelta(seconds=1), tmp_path) >= 1
    async with sessionmaker() as session:
        opened = (await session.scalars(select(Survey))).one()
    assert opened.status == "open" and opened.invited_people > 80
