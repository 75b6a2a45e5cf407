"""Periodic feedback rounds and comments sent any time (定期收集学生、家长意见建议).

A round is a short survey (`kind="feedback"`: a rating and an optional comment) per service
group, opened by the scheduler for the guardians of children placed in that group. Rounds are
voluntary: a parent can say "not now" (no reminder for that round; rounds never remind anyway) or
turn them off altogether.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, notices
from storage.models import (
    Application,
    ApplicationStatus,
    Feedback,
    FeedbackSetting,
    Guardianship,
    QuestionKind,
    School,
    ServiceGroup,
    Survey,
    SurveyQuestion,
    SurveyStatus,
)
from storage.surveys import SurveyError

MAX_COMMENT = 1000


async def start_rounds(
    session: AsyncSession,
    school: School,
    now: datetime,
    *,
    days: int,
    anonymous: bool,
    rating_text: Callable[[str], str],
    comment_text: str,
) -> list[Survey]:
    """One round per group with children placed in it, at most one per group and month.

    `rating_text(group name)` and `comment_text` are the two questions in the school's language
    (for the record and the dashboard); chats show them in each parent's own language.
    """
    month = notices.local(now, school).strftime("%Y-%m")
    groups = list(
        await session.scalars(
            select(ServiceGroup)
            .where(
                ServiceGroup.school_id == school.id,
                ServiceGroup.active.is_(True),
                ServiceGroup.id.in_(
                    select(Application.group_id).where(Application.status == ApplicationStatus.PLACED.value)
                ),
            )
            .order_by(ServiceGroup.id)
        )
    )
    earlier = await session.execute(
        select(Survey.group_id, Survey.opens_at).where(
            Survey.school_id == school.id, Survey.kind == "feedback"
        )
    )
    done = {gid for gid, opens in earlier if notices.local(opens, school).strftime("%Y-%m") == month}
    started = []
    for group in groups:
        if group.id in done:
            continue
        survey = Survey(
            school_id=school.id,
            kind="feedback",
            title=f"{group.name} · {month}",
            intro="",
            anonymous=anonymous,
            audience_kind="group",
            audience_value=group.name,
            group_id=group.id,
            opens_at=now,
            closes_at=now + timedelta(days=days),
            reminder_hours=[],
            reminders_sent=0,
            status=SurveyStatus.SCHEDULED.value,
            invited_people=0,
            created_at=now,
            questions=[
                SurveyQuestion(
                    position=1,
                    kind=QuestionKind.RATING.value,
                    text=rating_text(group.name),
                    options=[],
                    required=True,
                ),
                SurveyQuestion(
                    position=2, kind=QuestionKind.TEXT.value, text=comment_text, options=[], required=False
                ),
            ],
        )
        session.add(survey)
        started.append(survey)
    await session.flush()
    for survey in started:
        await audit.record(
            session, "feedback.round", school_id=school.id, target_type="survey", target_id=survey.id
        )
    return started


async def rounds_on(session: AsyncSession, person_ids: list[int]) -> bool:
    """Whether feedback rounds still reach these people (one chat)."""
    off = await session.scalar(
        select(FeedbackSetting.person_id)
        .where(FeedbackSetting.person_id.in_(person_ids), FeedbackSetting.rounds_off.is_(True))
        .limit(1)
    )
    return off is None


async def set_rounds(
    session: AsyncSession, school_id: int, person_ids: list[int], on: bool, now: datetime
) -> None:
    for person_id in person_ids:
        row = await session.get(FeedbackSetting, person_id)
        if row is None:
            row = FeedbackSetting(person_id=person_id, school_id=school_id)
            session.add(row)
        row.rounds_off, row.updated_at = not on, now
    await session.flush()


async def groups_of(session: AsyncSession, person_ids: list[int]) -> list[ServiceGroup]:
    """The groups these people's children are placed in (what a comment can be about)."""
    if not person_ids:
        return []
    placed = (
        select(Application.group_id)
        .join(Guardianship, Guardianship.student_id == Application.student_id)
        .where(Guardianship.person_id.in_(person_ids), Application.status == ApplicationStatus.PLACED.value)
    )
    return list(
        await session.scalars(
            select(ServiceGroup).where(ServiceGroup.id.in_(placed)).order_by(ServiceGroup.id)
        )
    )


async def add_comment(
    session: AsyncSession,
    school_id: int,
    text: str,
    today: date,
    *,
    person_id: int | None,
    group_id: int | None = None,
) -> Feedback:
    """Store a comment; anonymous ones (person_id None) keep only the day they came."""
    text = text.strip()
    if not text:
        raise SurveyError("required")
    if len(text) > MAX_COMMENT:
        raise SurveyError("text_too_long", max=MAX_COMMENT)
    row = Feedback(school_id=school_id, person_id=person_id, group_id=group_id, text=text, received_on=today)
    session.add(row)
    await session.flush()
    await audit.record(
        session, "feedback.comment", school_id=school_id, target_type="feedback", target_id=row.id
    )
    return row
