"""What the scheduler runs. Jobs are stored by textual reference (`bot.jobs:send_notice`) with ids
as arguments, so every job here is a module-level coroutine that finds the database through the
running scheduler (`bot.scheduler.current()`), opens its own transaction and wakes the sender.
"""

from __future__ import annotations

import logging

from bot import care, surveys
from bot.scheduler import current
from handlers.notices import TEXTS
from storage import notices, retention
from storage.clock import utcnow

log = logging.getLogger(__name__)


async def send_notice(notice_id: int) -> None:
    """Issue a scheduled notice, or this firing of a recurring one (a second call does nothing)."""
    context = current()
    async with context.sessionmaker.begin() as session:
        issued = await notices.run_scheduled(session, notice_id, utcnow(), TEXTS, context.notice_grace)
    if issued is not None:
        log.info("notice %s issued as #%s to %s accounts", notice_id, issued.notice.id, issued.accounts)
        context.wake()


async def send_digests() -> None:
    """Hand each account its daily digest once its digest time has come."""
    context = current()
    async with context.sessionmaker.begin() as session:
        written = await notices.send_digests(session, utcnow(), TEXTS)
    if written:
        log.info("queued %s notice digests", written)
        context.wake()


async def send_reminders() -> None:
    """Remind those who have not acknowledged yet (at most twice, never after the deadline)."""
    context = current()
    async with context.sessionmaker.begin() as session:
        queued = await notices.send_reminders(session, utcnow(), TEXTS)
    if queued:
        log.info("queued %s acknowledgement reminders", queued)
        context.wake()


async def watch_handovers() -> None:
    """Late pickups and unanswered pickup requests: every minute, in the safety lane."""
    context = current()
    if await care.watch_handovers(context.sessionmaker, utcnow()):
        context.wake()


async def care_housekeeping() -> None:
    """Lapsed offers, agreement reminders, vetting expiry and end-of-day summaries."""
    context = current()
    now = utcnow()
    sent = 0
    for job in (care.lapse_offers, care.remind_to_sign, care.check_vetting, care.day_summaries):
        try:
            sent += await job(context.sessionmaker, now)
        except Exception:  # one failing check must not stop the others
            log.exception("care job %s failed", job.__name__)
    if sent:
        context.wake()


async def survey_tick() -> None:
    """Open, remind and close surveys; send the results of those closed."""
    context = current()
    if await surveys.tick(context.sessionmaker, utcnow(), context.files_dir):
        context.wake()


async def feedback_rounds() -> None:
    """Start this period's feedback round for every group with children in it."""
    context = current()
    if await surveys.start_feedback_rounds(context.sessionmaker, utcnow(), days=context.feedback_days):
        await surveys.tick(context.sessionmaker, utcnow(), context.files_dir)  # open them now
        context.wake()


async def purge_retention() -> None:
    """Delete what has outlived its retention period (RETENTION_*); logs counts, never what."""
    context = current()
    async with context.sessionmaker.begin() as session:
        counts = await retention.purge_expired(
            session, utcnow(), context.retention, data_dir=context.files_dir
        )
    purged = ", ".join(f"{kind} {n}" for kind, n in counts.items() if n) or "nothing"
    log.info("retention purge: %s", purged)
