"""A parent joins with the invite from the letter home; codes are one-time and guessing is slowed."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from sqlalchemy import func, select

from storage.clock import utcnow
from storage.models import AccountBinding, AuditLog, Outbox
from tests.dialog import Chat, text_of, verify_dialog
from tests.school import load_example_school, parent_code, person_code


async def test_parent_joins_with_invite_and_reads_the_terms(deps, sessionmaker):
    await load_example_school(sessionmaker)
    code = await parent_code(sessionmaker, "S2026101")
    parent = Chat(deps)
    await verify_dialog(
        parent,
        [
            (f"/start {code}", ["曹若曦", "母亲", "绑定成功"]),
            ("/terms", ["每月 200 元", "每次 12 元", "建档立卡", "2026-09-01 起生效"]),
        ],
    )


async def test_class_teacher_is_told_through_the_outbox(deps, sessionmaker):
    await load_example_school(sessionmaker)
    teacher = Chat(deps, user_id="2001")
    await teacher.say(f"/start {await person_code(sessionmaker, 'teacher', 'T001')}")
    parent = Chat(deps, user_id="1001")
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    async with sessionmaker() as session:
        rows = list(await session.scalars(select(Outbox)))
    assert len(rows) == 1
    assert "曹若曦" in rows[0].payload["text"] and "董静" in rows[0].payload["text"]


async def test_a_used_code_is_refused_for_another_account(deps, sessionmaker):
    await load_example_school(sessionmaker)
    code = await parent_code(sessionmaker, "S2026102")
    await Chat(deps, user_id="1").say(f"/start {code}")
    replies = await Chat(deps, user_id="2").say(f"/start {code}")
    assert "已经被使用" in text_of(replies)
    again = await Chat(deps, user_id="1").say(f"/start {code}")
    assert "已经绑定过" in text_of(again)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count(AccountBinding.id))) == 1
        refused = await session.scalar(
            select(func.count(AuditLog.id)).where(AuditLog.action == "invite.refused")
        )
        assert refused == 1


async def test_expired_code_is_refused(deps, sessionmaker):
    await load_example_school(sessionmaker)
    code = await parent_code(sessionmaker, "S2026103")
    with time_machine.travel(utcnow() + timedelta(days=31), tick=False):
        replies = await Chat(deps).say(f"/start {code}")
    assert "已过期" in text_of(replies)


async def test_guessing_is_slowed_after_five_wrong_codes(deps, sessionmaker):
    await load_example_school(sessionmaker)
    code = await parent_code(sessionmaker, "S2026104")
    guesser = Chat(deps, language="en")
    for _ in range(5):
        assert "not right" in text_of(await guesser.say("/start WRONGCODE2345"))
    assert "Too many wrong codes" in text_of(await guesser.say(f"/start {code}"))
    with time_machine.travel(utcnow() + timedelta(hours=1, minutes=1), tick=False):
        assert "You are linked" in text_of(await guesser.say(f"/start {code}"))


async def test_start_without_code_then_typing_the_code(deps, sessionmaker):
    await load_example_school(sessionmaker)
    code = await parent_code(sessionmaker, "S2026105")
    parent = Chat(deps)
    await verify_dialog(
        parent,
        [
            ("/start", ["邀请码", "http://school.test/terms"]),
            (code.lower(), ["绑定成功"]),
            ("/start", ["您好"]),
        ],
    )


async def test_parent_of_two_children_binds_both(deps, sessionmaker):
    """Siblings: each child's guardian row gets its own code; one chat holds both."""
    await load_example_school(sessionmaker)
    parent = Chat(deps)
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026201')}")
    greeting = text_of(await parent.say("/start"))
    assert "曹若曦" in greeting
    assert greeting.count("（") >= 2
