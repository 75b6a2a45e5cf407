"""Who a notice reaches, and when: audiences, digests, quiet hours and reminders, with time set
by the test (time-machine moves storage.clock.utcnow; the domain functions take `now`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import update

from handlers.notices import TEXTS
from storage import notices
from storage.models import Lane, Outbox, OutboxStatus, School
from storage.notices import Audience, Draft, NoticeError, Preference
from tests.dialog import text_of
from tests.notice_helpers import SHANGHAI, account_id, at, delivered, inbox, reply_of, school_with_people


async def _send(sessionmaker, now: datetime, title: str, **options) -> notices.Issued:
    audience = options.pop("audience", Audience("class", "一年级(1)班"))
    async with sessionmaker.begin() as session:
        school = await notices_school(session)
        return await notices.create_notice(
            session, school, Draft(title, f"{title}：详情见附件。", audience, **options), now, TEXTS
        )


async def notices_school(session) -> School:
    from storage.schools import resolve_school

    return await resolve_school(session, None)


async def test_audiences_resolve_to_people_and_their_accounts(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker)
    async with sessionmaker() as session:
        school = await notices_school(session)
        sizes = {}
        for text in (
            "school",
            "grade:一年级",
            "class:一年级(1)班",
            "role:teacher",
            "role:parent",
            "role:admin",
        ):
            found = await notices.resolve_audience(session, school.id, Audience.parse(text))
            sizes[text] = (found.people, len(found.account_ids), found.not_joined)
        # 40 pupils with 78 guardians, 11 staff / committee / admins; 5 of them are in the chat.
        assert sizes == {
            "school": (89, 5, 84),
            "grade:一年级": (39, 3, 36),
            "class:一年级(1)班": (19, 2, 17),
            "role:teacher": (6, 1, 5),
            "role:parent": (78, 3, 75),
            "role:admin": (2, 1, 1),
        }
        for bad, key in (
            ("grade:九年级", "unknown_grade"),
            ("class:火星班", "unknown_class"),
            ("role:cook", "unknown_role"),
        ):
            with pytest.raises(NoticeError) as caught:
                await notices.check_audience(session, school.id, Audience.parse(bad))
            assert caught.value.key == key
    for bad in ("everyone", "grade:", "school:all", "class"):
        with pytest.raises(NoticeError):
            Audience.parse(bad)
    assert people.admin.seen  # the admin is bound (counted above under role:admin)


def test_quiet_hours_and_digest_times_in_the_school_time_zone():
    quiet = notices.DEFAULT_QUIET_HOURS
    assert notices.quiet_until(at(7, 20, 59), SHANGHAI, quiet) is None
    assert notices.quiet_until(at(7, 21, 0), SHANGHAI, quiet) == at(8, 7)
    assert notices.quiet_until(at(8, 6, 59), SHANGHAI, quiet) == at(8, 7)
    assert notices.quiet_until(at(8, 7, 0), SHANGHAI, quiet) is None
    assert notices.quiet_until(at(8, 13), SHANGHAI, "12:00-14:00") == at(8, 14)
    assert notices.quiet_until(at(8, 23), SHANGHAI, "") is None
    night = at(7, 23)
    assert notices.deliver_after(night, SHANGHAI, Preference(), Lane.SAFETY) == night  # safety ignores them
    assert notices.deliver_after(night, SHANGHAI, Preference(), Lane.BULK) == at(8, 7)
    assert notices.next_digest(at(7, 10), SHANGHAI, "18:00") == at(7, 18)
    assert notices.next_digest(at(7, 18), SHANGHAI, "18:00") == at(8, 18)
    # Crontab weekday numbers (5 = Friday, 0 and 7 = Sunday), not APScheduler 3's (0 = Monday).
    school = School(name="x", code="x", timezone="Asia/Shanghai")
    assert notices.next_fire("0 16 * * 5", school, at(2, 10)) == at(4, 16)
    assert notices.next_fire("0 16 * * fri", school, at(2, 10)) == at(4, 16)
    assert notices.next_fire("0 9 * * 0", school, at(2, 10)) == at(6, 9)
    assert notices.next_fire("0 9 * * 7", school, at(2, 10)) == at(6, 9)
    assert notices.next_fire("30 7 * * 1-5", school, at(5, 10)) == at(7, 7, 30)
    for bad in ("0 16 * *", "0 25 * * *", "0 16 * * 9", "every friday"):
        with pytest.raises(NoticeError):
            notices.cron_trigger(bad, SHANGHAI)


async def test_digest_quiet_hours_and_urgent_notices(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker)
    with time_machine.travel(at(7, 9), tick=False):
        settings = await people.mother.say("/settings")
        assert "即时推送" in text_of(settings) and "21:00–07:00" in text_of(settings)
        chosen = text_of(await people.mother.press("p:d:1800"))
    assert "已保存" in chosen and "每天 18:00 汇总" in chosen

    # A non-urgent notice at 10:00: the instant parent gets it now, the digest parent at 18:00.
    await _send(sessionmaker, at(7, 10), "午餐调整")
    other = await inbox(sessionmaker, people.other)
    assert [(r.lane, r.not_before) for r in other] == [(Lane.BULK.value, at(7, 10))]
    assert await inbox(sessionmaker, people.mother) == []
    async with sessionmaker.begin() as session:
        assert await notices.send_digests(session, at(7, 17, 59), TEXTS) == 0
        assert await notices.send_digests(session, at(7, 18), TEXTS) == 1
        assert await notices.send_digests(session, at(7, 18, 5), TEXTS) == 0  # nothing is sent twice
    digest = await inbox(sessionmaker, people.mother)
    assert len(digest) == 1 and "今日通知汇总" in digest[0].payload["text"]
    assert "午餐调整" in digest[0].payload["text"]

    # Held after today's digest time: it waits for tomorrow's.
    await _send(sessionmaker, at(7, 19), "校车时刻")
    async with sessionmaker.begin() as session:
        assert await notices.send_digests(session, at(7, 20), TEXTS) == 0
        assert await notices.send_digests(session, at(8, 18), TEXTS) == 1

    # At 22:30 a notice waits for the end of quiet hours; urgent ones skip the digest, not the night.
    await _send(sessionmaker, at(7, 22, 30), "明日停课", urgent=True)
    assert (await inbox(sessionmaker, people.other))[-1].not_before == at(8, 7)
    mother_rows = await inbox(sessionmaker, people.mother)
    assert "明日停课" in mother_rows[-1].payload["text"] and mother_rows[-1].not_before == at(8, 7)

    # Back to instant delivery: what the digest was holding comes at once; no questions asked.
    await _send(sessionmaker, at(9, 10), "运动会")
    with time_machine.travel(at(9, 11), tick=False):
        assert "即时推送" in text_of(await people.mother.press("p:d:now"))
    last = (await inbox(sessionmaker, people.mother))[-1]
    assert "运动会" in last.payload["text"] and last.not_before == at(9, 11)
    # Quiet hours off: a notice at night goes at once.
    with time_machine.travel(at(9, 12), tick=False):
        assert "免打扰时段：关闭" in text_of(await people.other.press("p:q:off"))
    await _send(sessionmaker, at(9, 23), "夜间通知")
    assert (await inbox(sessionmaker, people.other))[-1].not_before == at(9, 23)
    # Nothing in all this asked anyone to turn instant delivery back on.
    texts = [
        r.payload["text"] for chat in (people.mother, people.other) for r in await inbox(sessionmaker, chat)
    ]
    assert not any("/settings" in t and "汇总" not in t for t in texts)


async def test_at_most_two_reminders_before_the_deadline(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker)
    sent_at = at(7, 10)  # Monday 10:00, acknowledge within 72 hours: by Thursday 10:00
    await _send(sessionmaker, sent_at, "家长会回执", ack_within_hours=72)
    await delivered(sessionmaker, sent_at)
    ack = reply_of((await inbox(sessionmaker, people.mother))[0]).buttons[0][0].payload
    with time_machine.travel(at(7, 11), tick=False):
        assert "已确认阅读" in text_of(await people.mother.press(ack))

    async def remind(when: datetime) -> int:
        async with sessionmaker.begin() as session:
            return await notices.send_reminders(session, when, TEXTS)

    assert await remind(at(8, 9, 59)) == 0
    assert await remind(at(8, 10)) == 1  # a third of the way to the deadline
    assert await remind(at(8, 16)) == 0
    assert await remind(at(9, 10)) == 1  # two thirds
    assert await remind(at(9, 20)) == 0
    assert await remind(at(10, 9, 59)) == 0  # two is the most
    assert await remind(at(11, 10)) == 0  # and never after the deadline
    other = [r.payload["text"] for r in await inbox(sessionmaker, people.other)]
    assert len(other) == 3 and "第 1/2 次" in other[1] and "第 2/2 次" in other[2]
    assert len(await inbox(sessionmaker, people.mother)) == 1  # she acknowledged: no reminder

    # The admin sees who has not acknowledged, and how often they were reminded.
    async with sessionmaker() as session:
        report = await notices.report(session, 1)
    assert report.counts["acknowledged"] == 1 and report.counts["sent"] == 2
    assert [(r.names, r.reminders) for r in report.not_acknowledged] == [(("冯丽娟",), 2)]


async def test_reminders_wait_out_quiet_hours_and_skip_undelivered(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker)
    await _send(sessionmaker, at(7, 14), "体检通知", ack_within_hours=24)  # due by 8th 14:00
    # Only the other parent's message went out; the mother's is still waiting (her phone is off):
    # she is not reminded of a notice she never got.
    other = await account_id(sessionmaker, people.other)
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Outbox)
            .where(Outbox.account_id == other)
            .values(status=OutboxStatus.SENT.value, sent_at=at(7, 14))
        )

    async def remind(when: datetime) -> int:
        async with sessionmaker.begin() as session:
            return await notices.send_reminders(session, when, TEXTS)

    assert await remind(at(7, 22)) == 0  # due at 22:00, but quiet hours
    assert await remind(at(8, 6, 55)) == 0
    assert await remind(at(8, 7)) == 1  # as soon as quiet hours end
    assert await remind(at(8, 7, 5)) == 0  # the second reminder is due too, but not minutes later
    assert await remind(at(8, 11)) == 1
    assert await remind(at(8, 13)) == 0
    assert len(await inbox(sessionmaker, people.other)) == 3
    assert len(await inbox(sessionmaker, people.mother)) == 1


def test_a_notice_time_is_read_in_the_school_time_zone():
    school = School(name="x", code="x", timezone="Asia/Shanghai")
    assert notices.parse_local("2026-09-04 16:00", school) == datetime(2026, 9, 4, 8, tzinfo=UTC)
    assert notices.parse_local(" 2026-09-04T16:00 ", school) == at(4, 16)
    with pytest.raises(NoticeError):
        notices.parse_local("下周五", school)
    assert notices.reminder_due(at(7, 10), at(10, 10), 1) == at(8, 10)
    assert notices.reminder_due(at(7, 10), at(10, 10), 2) - at(7, 10) == timedelta(days=2)
