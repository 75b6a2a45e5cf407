"""The enrollment story through the chat: a parent applies, the class teacher approves, the school
approves and places the child, the parent is told; withdrawing frees the place for the next child."""

from __future__ import annotations

from datetime import date

import yaml
from sqlalchemy import func, select

from storage import groups, vetting
from storage.models import Application, AuditLog, Outbox, Person, School
from tests.dialog import Chat, payloads, text_of
from tests.school import EXAMPLES, load_example_school, parent_code, person_code


async def setup_groups(sessionmaker, capacity: int | None = None) -> None:
    async with sessionmaker.begin() as session:
        for number in ("T005", "S001", "S002"):
            person = (await session.scalars(select(Person).where(Person.person_no == number))).one()
            await vetting.record(
                session,
                person,
                moral_ok=True,
                health_ok=True,
                qualification_ok=True,
                checked_on=date(2026, 8, 1),
                checked_by="周校长",
                valid_until=date(2027, 7, 31),
            )
        school = (await session.scalars(select(School))).one()
        spec = groups.parse_groups(yaml.safe_load((EXAMPLES / "groups.yaml").read_text("utf-8")))
        await groups.import_groups(session, school, spec.term or "", spec, date(2026, 9, 1))
        if capacity is not None:
            for g in await groups.groups_of_term(session, school.id, spec.term or ""):
                g.capacity = capacity if g.name == "一年级作业辅导" else 0


async def outbox_texts(sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        return [r.payload["text"] for r in await session.scalars(select(Outbox).order_by(Outbox.id))]


async def outbox_buttons(sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Outbox).order_by(Outbox.id))
        return [b["payload"] for r in rows for row in r.payload["buttons"] for b in row if b["payload"]]


async def join(deps, sessionmaker, user_id: str, code: str, language: str = "zh-hans") -> Chat:
    chat = Chat(deps, user_id=user_id, language=language)
    await chat.say(f"/start {code}")
    return chat


async def test_parent_applies_teacher_and_school_approve_child_is_placed(deps, sessionmaker):
    await load_example_school(sessionmaker)
    await setup_groups(sessionmaker)
    teacher = await join(deps, sessionmaker, "t1", await person_code(sessionmaker, "teacher", "T001"))
    admin = await join(deps, sessionmaker, "a1", await person_code(sessionmaker, "admin", "A001"))
    parent = await join(deps, sessionmaker, "p1", await parent_code(sessionmaker, "S2026101"))

    first = text_of(await parent.say("/apply"))
    assert "曹若曦" in first and "第 1 步" in first
    await parent.press("a:d:all")  # untick all five days ...
    await parent.press("a:d:all")  # ... all again (the button selects all)
    await parent.press("a:d:tue")  # and drop Tuesday
    await parent.press("a:n")
    await parent.press("a:o:noon")
    await parent.press("a:n")
    await parent.press("a:v:homework")
    await parent.press("a:n")
    await parent.press("a:p:migrant")
    await parent.press("a:n")
    await parent.press("a:w:y")
    summary = text_of(await parent.say("建档立卡证明已交班主任"))
    assert "周一、周三、周四、周五" in summary
    assert "午间看护" in summary and "待审核" in summary
    assert "进城务工人员随迁子女" in summary
    done = text_of(await parent.press("a:ok"))
    assert "已提交" in done

    request = (await outbox_texts(sessionmaker))[-1]
    assert "曹若曦" in request and "请核实" in request
    app_id = (await outbox_buttons(sessionmaker))[-1].split(":")[-1]

    # A teacher of another class cannot approve, even with the right button payload.
    other = await join(deps, sessionmaker, "t2", await person_code(sessionmaker, "teacher", "T002"))
    assert "不能处理" in text_of(await other.press(f"r:ok:{app_id}"))

    assert "已处理" in text_of(await teacher.press(f"r:ok:{app_id}"))
    assert "已经处理过" in text_of(await teacher.press(f"r:ok:{app_id}"))  # replayed
    assert "待学校核准" in (await outbox_texts(sessionmaker))[-1]

    assert "已处理" in text_of(await admin.press(f"r:sa:{app_id}"))
    assert "费用减免已批准" in (await outbox_texts(sessionmaker))[-1]

    proposal = await admin.say("/place")
    assert "一年级作业辅导：1 人" in text_of(proposal)
    confirm = next(p for p in payloads(proposal) if p.startswith("q:ok:"))
    assert "安排 1 人" in text_of(await admin.press(confirm))
    placed = (await outbox_texts(sessionmaker))[-1]
    assert "曹若曦" in placed and "一年级作业辅导" in placed and "刘洋" in placed

    status = text_of(await parent.say("/status"))
    assert "已安排" in status and "一年级(1)班教室" in status

    async with sessionmaker() as session:
        audited = set(await session.scalars(select(AuditLog.action)))
        refused = await session.scalar(
            select(func.count(AuditLog.id)).where(AuditLog.action == "application.refused")
        )
    assert {"application.submitted", "application.class_approved", "application.approved"} <= audited
    assert refused == 2  # the other class's teacher, and the replay


async def test_withdrawal_frees_the_place_and_the_next_child_is_offered_it(deps, sessionmaker):
    await load_example_school(sessionmaker)
    await setup_groups(sessionmaker, capacity=1)
    admin = await join(deps, sessionmaker, "a1", await person_code(sessionmaker, "admin", "A001"))
    first = await join(deps, sessionmaker, "p1", await parent_code(sessionmaker, "S2026102"))
    second = await join(deps, sessionmaker, "p2", await parent_code(sessionmaker, "S2026103"), "en")
    for parent in (first, second):
        await parent.say("/apply")
        for press in ("a:n", "a:n", "a:n", "a:n", "a:w:n", "a:ok"):
            await parent.press(press)
    async with sessionmaker.begin() as session:
        for app in await session.scalars(select(Application)):
            app.status = "class_approved"
    for app_id in (1, 2):
        await admin.press(f"r:sa:{app_id}")
    proposal = await admin.say("/place")
    await admin.press(next(p for p in payloads(proposal) if p.startswith("q:ok:")))
    assert "number <b>1</b> on the waiting list" in (await outbox_texts(sessionmaker))[-1]

    choose = await first.say("/withdraw")
    confirm = await first.press(payloads(choose)[0])
    assert "退出完全自愿" in text_of(choose)
    assert "高佳怡" in text_of(await first.press(payloads(confirm)[0]))
    offer = (await outbox_texts(sessionmaker))[-1]
    assert "a place is free" in offer and "王子轩" in offer
    accept = next(p for p in await outbox_buttons(sessionmaker) if p.startswith("o:y:"))
    assert "不能处理" in text_of(await first.press(accept))  # not their child: refused, audited
    answered = text_of(await second.press(accept))
    assert "Accepted" in answered and "一年级作业辅导" in answered
