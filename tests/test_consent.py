"""The privacy notice at binding: read it, decline (nothing linked) or accept (linked, consent kept);
a new version of the notice is asked for once more, before anything else."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from handlers.start import ACCEPT, DECLINE
from storage import consent
from storage.clock import utcnow
from storage.models import AccountBinding, ConversationState, PrivacyConsent
from tests.dialog import Chat, payloads, text_of
from tests.school import load_example_school, parent_code, person_code


async def count(sessionmaker, column) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count(column))) or 0


async def test_a_parent_declines_then_comes_back_and_accepts(deps, sessionmaker):
    await load_example_school(sessionmaker)
    code = await parent_code(sessionmaker, "S2026101")
    parent = Chat(deps, accepts_privacy_notice=False)

    notice = await parent.say(f"/start {code}")
    text = text_of(notice)
    assert "隐私说明" in text and "后四位" in text and "365 天" in text and "班主任" in text
    assert payloads(notice) == [ACCEPT, DECLINE]
    assert await count(sessionmaker, AccountBinding.id) == 0  # nothing bound while the notice waits

    declined = text_of(await parent.press(DECLINE))
    assert "没有绑定" in declined and "/start" in declined
    assert await count(sessionmaker, AccountBinding.id) == 0
    assert await count(sessionmaker, PrivacyConsent.id) == 0
    assert await count(sessionmaker, ConversationState.account_id) == 0  # the held code is gone

    assert "隐私说明" in text_of(await parent.say(f"/start {code}"))  # the code still works
    bound = text_of(await parent.press(ACCEPT))
    assert "绑定成功" in bound and "曹若曦" in bound
    async with sessionmaker() as session:
        row = (await session.scalars(select(PrivacyConsent))).one()
    assert row.version == consent.PRIVACY_NOTICE_VERSION and row.account_id is not None
    assert await count(sessionmaker, AccountBinding.id) == 1

    assert "隐私说明" in text_of(await parent.say("/privacy"))  # readable at any time
    assert payloads(parent.seen[-1:]) == []  # no buttons once accepted


async def test_staff_read_and_accept_the_notice_too(deps, sessionmaker):
    await load_example_school(sessionmaker)
    teacher = Chat(deps, user_id="2001", language="en", accepts_privacy_notice=False)
    notice = text_of(await teacher.say(f"/start {await person_code(sessionmaker, 'teacher', 'T001')}"))
    assert "Privacy notice" in notice and "365 days" in notice
    assert "You joined as" in text_of(await teacher.press(ACCEPT))


async def test_a_held_code_is_checked_again_when_accepted(deps, sessionmaker):
    await load_example_school(sessionmaker)
    code = await parent_code(sessionmaker, "S2026102")
    slow = Chat(deps, user_id="1", accepts_privacy_notice=False)
    await slow.say(f"/start {code}")
    with time_machine.travel(utcnow() + timedelta(days=31), tick=False):
        assert "已过期" in text_of(await slow.press(ACCEPT))
    assert await count(sessionmaker, AccountBinding.id) == 0

    other = await parent_code(sessionmaker, "S2026103")
    first, second = Chat(deps, user_id="2", accepts_privacy_notice=False), Chat(deps, user_id="3")
    await first.say(f"/start {other}")
    assert "绑定成功" in text_of(await second.say(f"/start {other}"))  # the same slip, quicker
    assert "已经被使用" in text_of(await first.press(ACCEPT))
    assert await count(sessionmaker, PrivacyConsent.id) == 1  # only the one who was bound


async def test_wrong_codes_never_reach_the_notice(deps, sessionmaker):
    await load_example_school(sessionmaker)
    code = await parent_code(sessionmaker, "S2026104")
    guesser = Chat(deps, accepts_privacy_notice=False)
    for _ in range(5):
        assert payloads(await guesser.say("/start WRONGCODE2345")) == []
    assert "输入错误次数过多" in text_of(await guesser.say(f"/start {code}"))
    assert "按钮已失效" in text_of(await guesser.press(ACCEPT))  # a forged answer binds nothing
    assert await count(sessionmaker, AccountBinding.id) == 0


async def test_a_new_notice_version_is_asked_once_before_anything_else(
    deps, sessionmaker, monkeypatch: pytest.MonkeyPatch
):
    await load_example_school(sessionmaker)
    parent = Chat(deps, accepts_privacy_notice=False)
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026105')}")
    await parent.press(ACCEPT)
    assert "隐私说明" not in text_of(await parent.say("/apply"))

    monkeypatch.setattr(consent, "PRIVACY_NOTICE_VERSION", consent.PRIVACY_NOTICE_VERSION + 1)
    await parent.say("/cancel")
    asked = await parent.say("/apply")
    assert "隐私说明" in text_of(asked) and payloads(asked) == [ACCEPT, DECLINE]
    assert "隐私说明" in text_of(await parent.say("随便说点什么"))
    assert "隐私说明" in text_of(await parent.press("p:whatever"))  # other flows' buttons wait too
    for free in ("/help", "/terms", "/cancel", "/lang"):  # leaving, help, terms and language do not
        assert "隐私说明" not in text_of(await parent.say(free)), free

    assert "暂停使用" in text_of(await parent.press(DECLINE))
    assert "隐私说明" in text_of(await parent.say("/apply"))  # still waiting for an answer

    accepted = text_of(await parent.press(ACCEPT))
    assert "已记录" in accepted and "您好" in accepted
    assert "隐私说明" not in text_of(await parent.say("/apply"))
    async with sessionmaker() as session:
        versions = list(await session.scalars(select(PrivacyConsent.version).order_by(PrivacyConsent.id)))
    assert versions == [consent.PRIVACY_NOTICE_VERSION - 1, consent.PRIVACY_NOTICE_VERSION]


async def test_someone_bound_before_the_notice_existed_is_asked_on_their_next_message(deps, sessionmaker):
    await load_example_school(sessionmaker)
    parent = Chat(deps)  # accepts when asked
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026106')}")
    async with sessionmaker.begin() as session:  # as if bound by an earlier release
        for row in await session.scalars(select(PrivacyConsent)):
            await session.delete(row)
    replies = await parent.say("/status")
    assert "隐私说明" in replies[0].text and "已记录" in text_of(replies)
    assert await count(sessionmaker, PrivacyConsent.id) == 1
