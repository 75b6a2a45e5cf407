"""The scheduler's survey work: open, remind, close, send the results; start feedback rounds.

Results go to the parent committee and the administrators when a survey closes: a text summary,
one chart per question (PNG) and every answer in an XLSX file, each in the reader's language.
Charts are drawn on a worker thread outside any transaction (drawing takes tens of milliseconds
a chart; on SQLite a transaction held that long would stall every chat). The summary is queued in
one transaction with its "sent" mark, so a crash before it loses nothing and after it repeats nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import threading
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import messages
from handlers.dialog import Attachment, Reply
from handlers.survey import TEXTS
from messages import charts, exports
from storage import accounts, feedback, outbox, surveys
from storage.models import Lane, PlatformAccount, School, Survey
from storage.surveys import AnswerRow, SurveyResults

log = logging.getLogger(__name__)

# matplotlib is not thread-safe: one drawing at a time, whichever thread it runs on.
_DRAWING = threading.Lock()


async def tick(sessionmaker: async_sessionmaker[AsyncSession], now: datetime, files_dir: Path | None) -> int:
    """One pass: open what is due, remind, close, then send results. Returns messages queued."""
    async with sessionmaker.begin() as session:
        opened = await surveys.open_due(session, now, TEXTS)
        reminded = await surveys.remind_due(session, now, TEXTS)
        closed = await surveys.close_due(session, now)
    for survey in opened:
        log.info("survey %s opened for %s people", survey.id, survey.invited_people)
    for survey in closed:
        log.info("survey %s closed", survey.id)
    return len(opened) + reminded + await send_summaries(sessionmaker, now, files_dir)


async def send_summaries(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime, files_dir: Path | None
) -> int:
    async with sessionmaker() as session:
        pending = [s.id for s in await surveys.awaiting_summary(session)]
    queued = 0
    for survey_id in pending:
        try:
            queued += await _summarise(sessionmaker, survey_id, now, files_dir)
        except Exception:  # one survey's trouble must not hold the others' results back
            log.exception("survey %s: sending the results failed; retrying on the next pass", survey_id)
    return queued


def _draw(
    results: SurveyResults, rows: list[AnswerRow], locale: str, folder: Path
) -> tuple[list[Path], Path]:
    """(Worker thread.) The charts and the XLSX for one language, written into `folder`."""
    with _DRAWING:
        return _draw_locked(results, rows, locale, folder)


def _draw_locked(
    results: SurveyResults, rows: list[AnswerRow], locale: str, folder: Path
) -> tuple[list[Path], Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pictures = []
    for name, png in charts.survey_charts(results, locale):
        path = folder / name
        path.write_bytes(png)
        pictures.append(path)
    book = folder / f"survey-{results.survey_id}.xlsx"
    book.write_bytes(exports.survey_xlsx(results, rows, locale))
    return pictures, book


async def _summarise(
    sessionmaker: async_sessionmaker[AsyncSession], survey_id: int, now: datetime, files_dir: Path | None
) -> int:
    async with sessionmaker() as session:
        survey = await session.get(Survey, survey_id)
        assert survey is not None
        results = await surveys.results(session, survey)
        rows = await surveys.answer_rows(session, survey)
        readers = await surveys.readers(session, survey.school_id)
        found: list[PlatformAccount] = []
        for person_id in readers:
            found += await accounts.accounts_of_person(session, person_id)
    by_id = {a.id: a for a in found if a.unreachable_at is None}
    files: dict[str, tuple[list[Path], Path]] = {}
    if files_dir is not None:
        token = secrets.token_urlsafe(12)
        for locale in sorted({a.locale for a in by_id.values()}):
            folder = files_dir / "surveys" / str(survey_id) / token / locale
            files[locale] = await asyncio.to_thread(_draw, results, rows, locale, folder)
    queued = 0
    async with sessionmaker.begin() as session:
        if not await surveys.claim_summary(session, survey_id, now):
            return 0
        survey = await session.get(Survey, survey_id)
        school = await session.get(School, survey.school_id) if survey else None
        assert survey is not None and school is not None
        for account in by_id.values():
            text = messages.render(
                "survey_summary", account.locale, results=results, min_group=surveys.MIN_GROUP
            )
            replies = [Reply(text)]
            drawn = files.get(account.locale)
            if drawn is not None:
                pictures, book = drawn
                questions = {f"q{q.position}.png": q for q in results.questions}
                for path in pictures:
                    q = questions[path.name]
                    caption = messages.render(
                        "survey_chart", account.locale, position=q.position, text=q.text
                    )
                    replies.append(Reply(caption, photo=_attachment(path, files_dir)))
                caption = messages.render("survey_file", account.locale, title=results.title)
                replies.append(Reply(caption, document=_attachment(book, files_dir)))
            for reply in replies:
                await outbox.enqueue(
                    session, account.id, reply.to_payload(), lane=Lane.INTERACTIVE, school_id=school.id
                )
                queued += 1
    log.info("survey %s: results queued to %s accounts", survey_id, len(by_id))
    return queued


def _attachment(path: Path, files_dir: Path | None) -> Attachment:
    assert files_dir is not None
    return Attachment(path.name, path.relative_to(files_dir).as_posix())


def _rating_text(locale: str, group: str) -> str:
    return messages.format_label("survey.feedback_rating", locale, group=group)


async def start_feedback_rounds(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime, *, days: int, anonymous: bool = True
) -> int:
    """This month's round for every group with children placed in it (once per group and month)."""
    started = 0
    async with sessionmaker.begin() as session:
        for school in await session.scalars(select(School).order_by(School.id)):
            locale = messages.DEFAULT_LOCALE
            rounds = await feedback.start_rounds(
                session,
                school,
                now,
                days=days,
                anonymous=anonymous,
                rating_text=functools.partial(_rating_text, locale),
                comment_text=messages.label("survey.feedback_comment", locale),
            )
            started += len(rounds)
    if started:
        log.info("started %s feedback rounds", started)
    return started
