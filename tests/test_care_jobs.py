"""The watchful jobs, with time controlled: late pickup alerts that repeat and escalate, the
end-of-day summary that names any child without a handover, lapsed offers, at most two agreement
reminders, and vetting that expires taking the person off duty."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from bot import care
from storage import vetting
from storage.models import Application, GroupDuty, Outbox, Person, Vetting
from tests.dialog import text_of
from tests.test_agreements import placed_parent
from tests.test_handover import signed_family

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = date(2026, 12, 7)  # the example service ends at 17:30


def at(hour: int, minute: int, day: date = MONDAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


async def texts(sessionmaker, lane: str | None = None) -> list[str]:
    async with sessionmaker() as session:
        query = select(Outbox).order_by(Outbox.id)
        if lane:
            query = query.where(Outbox.lane == lane)
        return [r.payload["text"] for r in await session.scalars(query)]


async def test_late_pickup_alerts_repeat_then_reach_the_admin(deps, sessionmaker):
    await signed_family(deps, sessionmaker)
    before = len(await texts(sessionmaker))
    assert await care.watch_handovers(sessionmaker, at(17, 40)) == 0  # within the 15-minute grace
    assert await care.watch_handovers(sessionmaker, at(17, 46)) > 0
    late = (await texts(sessionmaker, "safety"))[-2:]
    assert any("还在" in t and "曹若曦" in t for t in late) and any("还没有被接走" in t for t in late)
    assert await care.watch_handovers(sessionmaker, at(17, 50)) == 0  # not again within 10 minutes
    await care.watch_handovers(sessionmaker, at(17, 57))
    await care.watch_handovers(sessionmaker, at(18, 8))
    assert any("已提醒 3 次" in t for t in await texts(sessionmaker, "safety"))
    assert len(await texts(sessionmaker)) > before


async def test_a_handed_over_child_raises_no_alert_and_the_summary_flags_the_rest(deps, sessionmaker):
    _parent, _staff, _student = await signed_family(deps, sessionmaker)
    summaries = await care.day_summaries(sessionmaker, at(18, 40))
    assert summaries >= 1
    summary = next(t for t in await texts(sessionmaker) if "一年级作业辅导" in t and "日终汇总" in t)
    assert "日终汇总" in summary and "没有交接记录" in summary and "曹若曦" in summary
    assert await care.day_summaries(sessionmaker, at(18, 50)) == 0  # once a day


async def test_offers_lapse_and_pass_to_the_next_child(deps, sessionmaker):
    await placed_parent(deps, sessionmaker)
    async with sessionmaker.begin() as session:
        app = await session.get(Application, 1)
        app.status, app.offer_expires_at = "offered", at(12, 0)
    assert await care.lapse_offers(sessionmaker, at(11, 0)) == 0
    assert await care.lapse_offers(sessionmaker, at(12, 1)) >= 1
    assert "过确认期限" in (await texts(sessionmaker))[-1]
    async with sessionmaker() as session:
        assert (await session.get(Application, 1)).status == "withdrawn"


async def test_at_most_two_reminders_to_sign(deps, sessionmaker):
    await placed_parent(deps, sessionmaker)
    async with sessionmaker.begin() as session:
        await session.execute(update(Application).values(sign_requested_at=at(9, 0)))
    counts = [
        await care.remind_to_sign(sessionmaker, at(9, 0) + timedelta(days=d)) for d in (1, 2, 3, 4, 6, 9)
    ]
    assert counts == [0, 1, 0, 1, 0, 0]
    assert "还未签署" in (await texts(sessionmaker))[-1]


async def test_vetting_expiring_is_reported_once_and_expired_takes_staff_off_duty(deps, sessionmaker):
    _parent, staff, _student = await signed_family(deps, sessionmaker)
    async with sessionmaker.begin() as session:
        await session.execute(update(Vetting).values(valid_until=date(2026, 12, 20)))
    assert await care.check_vetting(sessionmaker, at(7, 0)) > 0  # the admin hears of it ...
    assert await care.check_vetting(sessionmaker, at(8, 0)) == 0  # ... once
    async with sessionmaker() as session:
        warned = await session.scalar(
            select(func.count(Vetting.id)).where(Vetting.expiry_warned_on.is_not(None))
        )
    assert warned >= 1
    await care.check_vetting(sessionmaker, at(7, 0, date(2026, 12, 21)))
    async with sessionmaker() as session:
        t005 = (await session.scalars(select(Person).where(Person.person_no == "T005"))).one()
        assert (
            await session.scalar(select(func.count(GroupDuty.id)).where(GroupDuty.person_id == t005.id)) == 0
        )
        assert await vetting.valid_record(session, t005.id, date(2026, 12, 21)) is None
    assert "不在这个服务班当值" in text_of(await staff.press("h:ap:1")) or "没有在岗" in text_of(
        await staff.say("/today")
    )
