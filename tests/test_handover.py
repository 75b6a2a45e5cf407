"""Every child handed to a named, authorised adult, and the parents told at once.

The set-up: 曹若曦 (S2026101) is placed in 一年级作业辅导 with a signed agreement; 刘洋 (T005) is on
duty there; the grandmother is on the pickup list.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from storage import handover
from storage.clock import utcnow
from storage.models import AuditLog, Handover, Outbox, PickupAdult, ServiceGroup
from tests.dialog import Chat, payloads, text_of
from tests.school import person_code
from tests.test_agreements import placed_parent, read_all


async def signed_family(deps, sessionmaker) -> tuple[Chat, Chat, int]:
    parent, app_id = await placed_parent(deps, sessionmaker)
    await read_all(parent, app_id)
    await parent.press(f"g:s:{app_id}")
    await parent.say("董静")
    staff = Chat(deps, user_id="staff")
    await staff.say(f"/start {await person_code(sessionmaker, 'teacher', 'T005')}")
    await parent.say("/pickup")
    await parent.press("k:add:1")
    await parent.say("王秀兰")
    await parent.say("外婆")
    added = text_of(await parent.say("13812345678"))
    assert "接送码" in added
    return parent, staff, 1


async def safety_messages(sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Outbox).where(Outbox.lane == "safety").order_by(Outbox.id))
        return [r.payload["text"] for r in rows]


async def test_attendance_then_handover_to_the_grandmother_in_two_taps(deps, sessionmaker):
    _parent, staff, student = await signed_family(deps, sessionmaker)
    roster = await staff.say("/today")
    assert "曹若曦" in text_of(roster) and "未考勤" in text_of(roster)
    group = next(p for p in payloads(roster) if p.startswith("h:ap:")).split(":")[2]
    assert "在校" in text_of(await staff.press(f"h:ap:{group}"))

    menu = await staff.press(f"h:c:{group}:{student}")  # tap 1: the child
    grandmother = next(p for p in payloads(menu) if p.startswith("h:h:"))
    assert "王秀兰" in text_of(menu) or "外婆" in str(menu)
    done = await staff.press(grandmother)  # tap 2: the adult
    assert "已交接" in text_of(done)

    told = (await safety_messages(sessionmaker))[-1]
    assert "曹若曦" in told and "王秀兰" in told and "外婆" in told and "刘洋" in told
    async with sessionmaker() as session:
        row = (await session.scalars(select(Handover))).one()
    assert row.kind == "listed" and row.adult_name == "王秀兰"
    assert "已经交接过" in text_of(await staff.press(grandmother))


async def test_an_unlisted_adult_needs_the_parents_explicit_allowance(deps, sessionmaker):
    parent, staff, student = await signed_family(deps, sessionmaker)
    group = next(p for p in payloads(await staff.say("/today")) if p.startswith("h:ap:")).split(":")[2]
    await staff.press(f"h:n:{group}:{student}")
    await staff.say("李强")
    waiting = text_of(await staff.say("邻居"))
    assert "留在学校" in waiting

    request = (await safety_messages(sessionmaker))[-1]
    assert "李强" in request and "本次" in request
    async with sessionmaker() as session:
        rows = await session.scalars(select(Outbox).where(Outbox.lane == "safety").order_by(Outbox.id.desc()))
        allow = next(
            b["payload"] for b in rows.first().payload["buttons"][0] if b["payload"].startswith("k:ok")
        )
    request_id = int(allow.split(":")[2])
    # Before the parents answer, no way to hand the child to this adult exists.
    assert "家长还没有回复" in text_of(await staff.press(f"h:r:{group}:{student}:{request_id}"))
    assert "已允许" in text_of(await parent.press(allow))
    assert "允许" in (await safety_messages(sessionmaker))[-1]
    handed = await staff.press(f"h:r:{group}:{student}:{request_id}")
    assert "李强" in text_of(handed)
    async with sessionmaker() as session:
        assert (await session.scalars(select(Handover))).one().kind == "allowed_once"


async def test_a_refused_adult_cannot_take_the_child_and_silence_escalates(deps, sessionmaker):
    parent, staff, student = await signed_family(deps, sessionmaker)
    group = next(p for p in payloads(await staff.say("/today")) if p.startswith("h:ap:")).split(":")[2]
    await staff.press(f"h:n:{group}:{student}")
    await staff.say("陌生人")
    await staff.say("朋友")
    await parent.press("k:no:1")
    assert "拒绝" in (await safety_messages(sessionmaker))[-1]
    assert "不在家长授权" in text_of(await staff.press(f"h:r:{group}:{student}:1"))

    await staff.press(f"h:n:{group}:{student}")
    await staff.say("张三")
    await staff.say("同事")
    async with sessionmaker.begin() as session:
        assert await handover.unanswered_requests(session, utcnow()) == []
    with time_machine.travel(utcnow() + timedelta(minutes=11), tick=False):
        async with sessionmaker.begin() as session:
            escalated = await handover.unanswered_requests(session, utcnow())
    assert [r.adult_name for r in escalated] == ["张三"]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count(Handover.id))) == 0


async def test_expected_but_absent_alerts_the_parents_reported_absence_does_not(deps, sessionmaker):
    parent, staff, student = await signed_family(deps, sessionmaker)
    group = next(p for p in payloads(await staff.say("/today")) if p.startswith("h:ap:")).split(":")[2]
    await staff.press(f"h:ab:{group}:{student}")
    alert = (await safety_messages(sessionmaker))[-1]
    assert "曹若曦" in alert and "没有到" in alert

    await parent.say("/absent")
    await parent.press("b:d:0")
    assert "已请假" in text_of(await parent.say("发烧"))
    before = len(await safety_messages(sessionmaker))
    await staff.press(f"h:ab:{group}:{student}")
    assert len(await safety_messages(sessionmaker)) == before
    assert "家长已请假" in text_of(await staff.say("/today"))


@pytest.mark.parametrize("who", ["parent", "other_staff", "stranger"])
async def test_only_staff_on_duty_hand_over(deps, sessionmaker, who):
    parent, staff, student = await signed_family(deps, sessionmaker)
    async with sessionmaker() as session:
        group = (
            await session.scalars(select(ServiceGroup).where(ServiceGroup.name == "一年级作业辅导"))
        ).one()
        adult = (await session.scalars(select(PickupAdult))).one()
    actor = {"parent": parent, "stranger": Chat(deps, user_id="x")}.get(who)
    if who == "other_staff":
        actor = Chat(deps, user_id="s1")
        await actor.say(f"/start {await person_code(sessionmaker, 'staff', 'S001')}")  # on another group
    assert "不在这个服务班当值" in text_of(await actor.press(f"h:h:{group.id}:{student}:{adult.id}"))
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count(Handover.id))) == 0
    assert "按钮已失效" in text_of(await staff.press(f"h:h:{group.id}:{student}"))  # malformed


async def test_two_staff_handing_over_the_same_child_at_once_make_one_record(deps, sessionmaker):
    _parent, staff, student = await signed_family(deps, sessionmaker)
    admin = Chat(deps, user_id="admin2")
    await admin.say(f"/start {await person_code(sessionmaker, 'admin', 'A002')}")
    async with sessionmaker() as session:
        group = (
            await session.scalars(select(ServiceGroup).where(ServiceGroup.name == "一年级作业辅导"))
        ).one()
        adult = (await session.scalars(select(PickupAdult))).one()
    payload = f"h:h:{group.id}:{student}:{adult.id}"
    first, second = await asyncio.gather(staff.press(payload), admin.press(payload))
    texts = sorted([text_of(first), text_of(second)])
    assert any("已交接" in t for t in texts) and any("已经交接过" in t for t in texts)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count(Handover.id))) == 1
        assert (
            await session.scalar(
                select(func.count(AuditLog.id)).where(AuditLog.action == "handover.recorded")
            )
            == 1
        )


async def test_going_home_alone_needs_an_older_child_and_a_recorded_consent(deps, sessionmaker):
    from storage.models import GoHomeAloneConsent, SchoolClass

    parent, staff, student = await signed_family(deps, sessionmaker)
    assert "3 年级及以上" in text_of(await parent.press(f"k:al:{student}"))  # 一年级: too young
    async with sessionmaker.begin() as session:
        for cls in await session.scalars(select(SchoolClass)):
            cls.grade = "三年级"
    offer = await parent.press(f"k:al:{student}")
    assert "同意自行回家" in text_of(offer)
    await parent.press(f"k:ay:{student}")
    async with sessionmaker() as session:
        consent = (await session.scalars(select(GoHomeAloneConsent))).one()
        assert len(consent.text_sha256) == 64
        group = (
            await session.scalars(select(ServiceGroup).where(ServiceGroup.name == "一年级作业辅导"))
        ).one()
    menu = await staff.press(f"h:c:{group.id}:{student}")
    alone = next(p for p in payloads(menu) if p.startswith("h:al:"))
    assert "自行回家" in text_of(await staff.press(alone))
    async with sessionmaker() as session:
        assert (await session.scalars(select(Handover))).one().kind == "alone"
