"""The school's watchful jobs (run by the leader's scheduler; each reads the database, so a missed
run costs nothing): late pickups, unanswered pickup requests, end-of-day summaries, lapsed offers,
agreement reminders and staff vetting. Every message about a child's safety goes in the safety lane.

Each function takes the session factory and "now", so tests drive them with time they control.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.dialog import notify_person
from handlers.enrollment_views import offer_buttons, sign_buttons, tell_guardians
from storage import agreements, enrollment, handover, vetting
from storage.enrollment import admins_of, guardians_of
from storage.models import Application, ApplicationStatus, Lane, School, Student

SIGN_REMINDER_EVERY = timedelta(days=2)


async def _student_name(session: AsyncSession, student_id: int) -> str:
    student = await session.get(Student, student_id)
    return student.name if student else ""


async def watch_handovers(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Late pickups (parents and staff, repeated, then the admin) and unanswered requests (the admin)."""
    sent = 0
    async with sessionmaker.begin() as session:
        for late in await handover.late_children(session, now):
            child = await _student_name(session, late.student_id)
            end = late.alert.day.isoformat()
            for person in await guardians_of(session, late.student_id):
                sent += await notify_person(
                    session,
                    person,
                    "late_pickup_parent",
                    lane=Lane.SAFETY,
                    school_id=late.group.school_id,
                    child=child,
                    group=late.group,
                    day=end,
                )
            for person in await handover.staff_of(session, late.group, late.alert.day):
                sent += await notify_person(
                    session,
                    person,
                    "late_pickup_staff",
                    lane=Lane.SAFETY,
                    school_id=late.group.school_id,
                    child=child,
                    group=late.group,
                )
            if late.escalate:
                for admin in await admins_of(session, late.group.school_id):
                    sent += await notify_person(
                        session,
                        admin,
                        "late_pickup_admin",
                        lane=Lane.SAFETY,
                        school_id=late.group.school_id,
                        child=child,
                        group=late.group,
                        alerts=late.alert.alerts,
                    )
        for req in await handover.unanswered_requests(session, now):
            child = await _student_name(session, req.student_id)
            for admin in await admins_of(session, req.school_id):
                sent += await notify_person(
                    session,
                    admin,
                    "unlisted_escalated",
                    lane=Lane.SAFETY,
                    school_id=req.school_id,
                    child=child,
                    req=req,
                )
    return sent


async def day_summaries(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    sent = 0
    async with sessionmaker.begin() as session:
        for summary in await handover.due_summaries(session, now):
            group = summary.group.group
            for admin in await admins_of(session, group.school_id):
                sent += await notify_person(
                    session,
                    admin,
                    "day_summary",
                    lane=Lane.SAFETY if summary.waiting else Lane.INTERACTIVE,
                    school_id=group.school_id,
                    s=summary,
                )
    return sent


async def lapse_offers(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Offers not answered in time close; the freed seats go to the next waiting children."""
    sent = 0
    async with sessionmaker.begin() as session:
        lapsed = await enrollment.expire_offers(session, now)
        for app in lapsed:
            await tell_guardians(session, app, "offer_lapsed")
        for school_id, term in {(a.school_id, a.term) for a in lapsed}:
            for app in await enrollment.offer_next(session, school_id, term, now):
                await tell_guardians(session, app, "offer_made", offer_buttons(app))
                sent += 1
    return sent + len(lapsed)


async def remind_to_sign(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """At most two reminders, two days apart, then nothing more (declining is a free choice)."""
    sent = 0
    async with sessionmaker.begin() as session:
        placed = await session.scalars(
            select(Application).where(
                Application.status == ApplicationStatus.PLACED.value,
                Application.sign_reminders < agreements.MAX_REMINDERS,
                Application.sign_requested_at.is_not(None),
            )
        )
        for app in placed:
            assert app.sign_requested_at is not None
            due = app.sign_requested_at + SIGN_REMINDER_EVERY * (app.sign_reminders + 1)
            if now < due or not await agreements.needs_signature(session, app):
                continue
            app.sign_reminders += 1
            await tell_guardians(session, app, "sign_reminder", sign_buttons(app))
            sent += 1
    return sent


async def check_vetting(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Tell admins of vetting ending within 30 days (once), and take expired people off duty."""
    sent = 0
    async with sessionmaker.begin() as session:
        for school in await session.scalars(select(School)):
            today = now.astimezone(ZoneInfo(school.timezone)).date()
            admins = await admins_of(session, school.id)
            for notice in await vetting.expiring_soon(session, school.id, today):
                record = await vetting.valid_record(session, notice.person_id, today)
                if record is None or record.expiry_warned_on is not None:
                    continue
                record.expiry_warned_on = today
                for admin in admins:
                    sent += await notify_person(
                        session,
                        admin,
                        "vetting_expiring",
                        school_id=school.id,
                        name=notice.person_name,
                        until=notice.valid_until.isoformat(),
                    )
            for notice in await vetting.take_expired_off_duty(session, school.id, today):
                for admin in admins:
                    sent += await notify_person(
                        session,
                        admin,
                        "vetting_expired",
                        lane=Lane.SAFETY,
                        school_id=school.id,
                        name=notice.person_name,
                        groups=list(notice.groups),
                        until=notice.valid_until.isoformat(),
                    )
    return sent
