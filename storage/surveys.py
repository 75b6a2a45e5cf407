"""Surveys and feedback rounds: definitions, opening, answering, reminders, closing and counting.

Plain async functions taking a session and an explicit `now`; the caller owns the transaction.
Texts are not made here (storage does not import messages): the caller passes a `Composer`.

Anonymity (docs/surveys.md): an anonymous response has no person, no time and, once the survey
closes, no key; while it is open its key is an HMAC of the person under the deployment's secret,
which is not in the database. Breakdowns and free texts need `MIN_GROUP` respondents.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, notices, outbox
from storage.models import (
    AccountBinding,
    Application,
    ApplicationStatus,
    Feedback,
    FeedbackSetting,
    Guardianship,
    Lane,
    Person,
    PersonRole,
    PlatformAccount,
    QuestionKind,
    Role,
    School,
    SchoolClass,
    ServiceGroup,
    Student,
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyQuestion,
    SurveyResponse,
    SurveyStatus,
)

MIN_GROUP = 3  # no breakdown (or anonymous result) is shown for fewer respondents
RATING_SCALE = (1, 2, 3, 4, 5)


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionCount:
    """One bar of a chart: an option's label (a rating is "1" … "5") and how many chose it."""

    label: str
    count: int


@dataclass(frozen=True)
class QuestionResult:
    position: int  # 1, 2, … in the order asked
    kind: str  # "single", "multiple", "rating" or "text" (storage.models.QuestionKind)
    text: str
    required: bool
    answered: int  # respondents who answered this question
    options: list[OptionCount] = field(default_factory=list)  # every option, zero counts included
    mean: float | None = None  # ratings only
    texts: list[str] = field(default_factory=list)  # free texts (empty when withheld)


@dataclass(frozen=True)
class SegmentResult:
    """A breakdown row (a class): shown only with `MIN_GROUP` respondents or more."""

    segment: str
    respondents: int
    hidden: bool
    means: dict[int, float] = field(default_factory=dict)  # rating question position -> mean


@dataclass(frozen=True)
class SurveyResults:
    survey_id: int
    title: str
    kind: str  # "survey" or "feedback"
    anonymous: bool
    status: str
    invited: int
    respondents: int
    questions: list[QuestionResult]
    segments: list[SegmentResult] = field(default_factory=list)
    # True when an anonymous survey has fewer than MIN_GROUP respondents: no answers are shown.
    withheld: bool = False

    @property
    def rate(self) -> float:
        """Response rate, 0.0–1.0."""
        return self.respondents / self.invited if self.invited else 0.0


@dataclass(frozen=True)
class AnswerRow:
    """One submitted response for exports: `who` is the name (named surveys) or "" (anonymous);
    `answers` has one cell per question, in order (multiple choices joined with "; ")."""

    number: int
    who: str
    segment: str
    answers: list[str]


@dataclass(frozen=True)
class TrendRow:
    """Feedback rounds of one group in one month: how many answered and the mean rating."""

    month: str  # YYYY-MM in the school's time zone
    group: str
    respondents: int
    mean: float | None
    hidden: bool  # fewer than MIN_GROUP respondents: no mean shown


@dataclass(frozen=True)
class Comment:
    received_on: date
    group: str
    text: str
    who: str  # "" when anonymous


class SurveyError(ValueError):
    """A problem the author or respondent can fix; `key` names its text (`survey_error.<key>`)."""

    def __init__(self, key: str, **params: object) -> None:
        self.key, self.params = key, params
        super().__init__(f"{key} {params}")


# -- definitions ---------------------------------------------------------------------------------

MAX_QUESTIONS = 30
MAX_OPTIONS = 10
MAX_OPTION_LENGTH = 60
MAX_QUESTION_LENGTH = 300
MAX_TEXT_ANSWER = 500
MAX_REMINDERS = 2
MAX_DAYS_OPEN = 92
AUDIENCE_KINDS = ("school", "grade", "class", "group", "role")


class QuestionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_QUESTION_LENGTH)
    type: QuestionKind
    options: list[str] = Field(default_factory=list, max_length=MAX_OPTIONS)
    required: bool = True

    @field_validator("text")
    @classmethod
    def _strip(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty")
        return value.strip()

    @model_validator(mode="after")
    def _options_fit_type(self) -> QuestionSpec:
        self.options = [str(o).strip() for o in self.options]
        if self.type in (QuestionKind.SINGLE, QuestionKind.MULTIPLE):
            if len(self.options) < 2:
                raise ValueError("needs_options")
            if any(not o or len(o) > MAX_OPTION_LENGTH for o in self.options):
                raise ValueError("bad_option")
            if len(set(self.options)) != len(self.options):
                raise ValueError("duplicate_option")
        elif self.options:
            raise ValueError("options_not_allowed")
        return self


class SurveySpec(BaseModel):
    """A survey as written in YAML (examples/survey.yaml) or the dashboard's form."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    intro: str = Field(default="", max_length=1000)
    anonymous: bool = False
    audience: str = "school"
    opens: str  # YYYY-MM-DD HH:MM in the school's time zone
    closes: str
    reminders: list[int] = Field(default_factory=list, max_length=MAX_REMINDERS)
    questions: list[QuestionSpec] = Field(min_length=1, max_length=MAX_QUESTIONS)

    @field_validator("opens", "closes", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        """YAML reads `2026-12-07 08:00` as a datetime; keep the wall-clock text either way."""
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M")
        return value

    @field_validator("reminders")
    @classmethod
    def _hours(cls, value: list[int]) -> list[int]:
        if any(h < 1 or h > MAX_DAYS_OPEN * 24 for h in value) or len(set(value)) != len(value):
            raise ValueError("bad_reminders")
        return sorted(value, reverse=True)  # the earliest reminder first


_PYDANTIC_KEYS = {
    "needs_options": "needs_options",
    "bad_option": "bad_option",
    "duplicate_option": "duplicate_option",
    "options_not_allowed": "options_not_allowed",
    "bad_reminders": "bad_reminders",
}


def parse_spec(data: Any) -> SurveySpec:
    """Validate a survey definition; the first problem becomes a SurveyError naming where it is."""
    if not isinstance(data, dict):
        raise SurveyError("not_a_survey")
    try:
        return SurveySpec.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(p + 1) if isinstance(p, int) else str(p) for p in problem["loc"]) or "-"
        message = str(problem.get("msg", ""))
        for marker, key in _PYDANTIC_KEYS.items():
            if marker in message:
                raise SurveyError(key, field=where) from None
        if problem["type"] == "missing":
            raise SurveyError("missing", field=where) from None
        if problem["type"] == "extra_forbidden":
            raise SurveyError("unknown_field", field=where) from None
        raise SurveyError("bad_value", field=where) from None


def _local(text: str, school: School) -> datetime:
    try:
        return notices.parse_local(text, school)
    except notices.NoticeError:
        raise SurveyError("bad_time", value=text) from None


def _audience(text: str) -> notices.Audience:
    kind, _, value = text.strip().partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if kind not in AUDIENCE_KINDS or (kind == "school") != (not value):
        raise SurveyError("bad_audience", value=text)
    return notices.Audience(kind, value)


async def _group_named(session: AsyncSession, school_id: int, name: str) -> ServiceGroup | None:
    return await session.scalar(
        select(ServiceGroup)
        .where(ServiceGroup.school_id == school_id, ServiceGroup.name == name, ServiceGroup.active.is_(True))
        .order_by(ServiceGroup.id.desc())
        .limit(1)
    )


async def schedule_survey(
    session: AsyncSession,
    school: School,
    spec: SurveySpec,
    now: datetime,
    *,
    created_by: int | None = None,
) -> Survey:
    """Store a survey for the scheduler to open, remind and close; refuse what cannot run as asked."""
    opens, closes = _local(spec.opens, school), _local(spec.closes, school)
    if closes <= now:
        raise SurveyError("closes_in_past", value=spec.closes)
    if closes <= opens:
        raise SurveyError("closes_before_opens")
    if closes - opens > timedelta(days=MAX_DAYS_OPEN):
        raise SurveyError("too_long_open", days=MAX_DAYS_OPEN)
    if any(closes - timedelta(hours=h) <= max(opens, now) for h in spec.reminders):
        raise SurveyError("reminder_outside", hours=spec.reminders[0])
    audience = _audience(spec.audience)
    group_id = None
    if audience.kind == "group":
        group = await _group_named(session, school.id, audience.value)
        if group is None:
            raise SurveyError("unknown_group", value=audience.value)
        group_id = group.id
    else:
        try:
            await notices.check_audience(session, school.id, audience)
        except notices.NoticeError as error:
            raise SurveyError(error.key, **error.params) from None
    survey = Survey(
        school_id=school.id,
        kind="survey",
        title=spec.title.strip(),
        intro=spec.intro.strip(),
        anonymous=spec.anonymous,
        audience_kind=audience.kind,
        audience_value=audience.value,
        group_id=group_id,
        opens_at=max(opens, now) if opens < now else opens,
        closes_at=closes,
        reminder_hours=list(spec.reminders),
        reminders_sent=0,
        status=SurveyStatus.SCHEDULED.value,
        invited_people=0,
        created_by_person_id=created_by,
        created_at=now,
        questions=[
            SurveyQuestion(position=n, kind=q.type.value, text=q.text, options=q.options, required=q.required)
            for n, q in enumerate(spec.questions, start=1)
        ],
    )
    session.add(survey)
    await session.flush()
    await audit.record(
        session,
        "survey.scheduled",
        school_id=school.id,
        actor_person_id=created_by,
        target_type="survey",
        target_id=survey.id,
        anonymous=spec.anonymous,
        audience=audience.kind,
    )
    return survey


async def cancel_survey(session: AsyncSession, school_id: int, survey_id: int) -> Survey:
    survey = await get_survey(session, school_id, survey_id)
    if survey is None:
        raise SurveyError("no_survey", id=survey_id)
    if survey.status not in (SurveyStatus.SCHEDULED.value, SurveyStatus.OPEN.value):
        raise SurveyError("not_cancellable", id=survey_id)
    survey.status = SurveyStatus.CANCELLED.value
    await audit.record(
        session, "survey.cancelled", school_id=school_id, target_type="survey", target_id=survey_id
    )
    return survey


async def list_surveys(session: AsyncSession, school_id: int, *, kind: str | None = None) -> list[Survey]:
    query = (
        select(Survey).where(Survey.school_id == school_id).order_by(Survey.opens_at.desc(), Survey.id.desc())
    )
    if kind is not None:
        query = query.where(Survey.kind == kind)
    return list(await session.scalars(query))


async def get_survey(session: AsyncSession, school_id: int, survey_id: int) -> Survey | None:
    """The survey if it belongs to this school; another school's id is as good as unknown."""
    survey = await session.get(Survey, survey_id)
    return survey if survey is not None and survey.school_id == school_id else None


async def audience_choices(session: AsyncSession, school_id: int) -> list[tuple[str, str]]:
    """(spec value, plain label) for forms: the school, each grade, class and group, parents."""
    found = await notices.audience_choices(session, school_id)
    choices = [("school", "")]
    choices += [(f"grade:{c.grade}", c.grade) for c in found.grades]
    choices += [(f"class:{c.name}", c.name) for c in found.classes]
    groups = await session.scalars(
        select(ServiceGroup.name)
        .where(ServiceGroup.school_id == school_id, ServiceGroup.active.is_(True))
        .distinct()
        .order_by(ServiceGroup.name)
    )
    choices += [(f"group:{name}", name) for name in groups]
    choices.append((f"role:{Role.PARENT.value}", Role.PARENT.value))
    return choices


# -- opening, reminding, closing -----------------------------------------------------------------


class Composer(Protocol):
    """Makes outbox payloads (a neutral Reply as a dict) in the recipient's language."""

    def invitation(self, survey: Survey, school: School, locale: str) -> dict[str, Any]: ...

    def reminder(self, survey: Survey, school: School, number: int, locale: str) -> dict[str, Any]: ...


def _placed_guardians(school_id: int, group_id: int) -> Select[Any]:
    return (
        select(Guardianship.person_id.label("person_id"))
        .join(Application, Application.student_id == Guardianship.student_id)
        .join(Student, Student.id == Guardianship.student_id)
        .where(
            Guardianship.school_id == school_id,
            Application.group_id == group_id,
            Application.status == ApplicationStatus.PLACED.value,
            Student.active.is_(True),
        )
    )


def _audience_people(survey: Survey) -> Any:
    if survey.audience_kind == "group":
        return _placed_guardians(survey.school_id, survey.group_id or 0)
    return notices.audience_people(
        survey.school_id, notices.Audience(survey.audience_kind, survey.audience_value)
    )


async def _accounts_of(session: AsyncSession, person_ids: Iterable[int]) -> list[PlatformAccount]:
    ids = list(person_ids)
    if not ids:
        return []
    return list(
        await session.scalars(
            select(PlatformAccount)
            .where(
                PlatformAccount.id.in_(
                    select(AccountBinding.account_id).where(AccountBinding.person_id.in_(ids))
                ),
                PlatformAccount.unreachable_at.is_(None),
            )
            .order_by(PlatformAccount.id)
        )
    )


async def _enqueue(
    session: AsyncSession,
    school: School,
    accounts: list[PlatformAccount],
    now: datetime,
    make: Callable[[str], dict[str, Any]],
) -> int:
    """One bulk message per account, after the account's quiet hours."""
    tz = notices.zone(school)
    preferences = await notices.preferences_of(session, [a.id for a in accounts])
    for account in accounts:
        preference = preferences.get(account.id, notices.Preference())
        await outbox.enqueue(
            session,
            account.id,
            make(account.locale),
            lane=Lane.BULK,
            school_id=school.id,
            not_before=notices.deliver_after(now, tz, preference),
        )
    return len(accounts)


async def _claim_due(
    session: AsyncSession, due: Any, before: SurveyStatus, after: SurveyStatus, **stamp: Any
) -> list[Survey]:
    """Move the surveys that are due from one status to the next, each by a conditional update, so
    two passes (or two leaders for a moment) never open or close one twice."""
    claimed = []
    for survey_id in list(await session.scalars(select(Survey.id).where(Survey.status == before.value, due))):
        moved = await session.execute(
            update(Survey)
            .where(Survey.id == survey_id, Survey.status == before.value)
            .values(status=after.value, **stamp)
            .execution_options(synchronize_session=False)
        )
        if getattr(moved, "rowcount", 0) == 1:
            survey = await session.get(Survey, survey_id, populate_existing=True)
            assert survey is not None
            claimed.append(survey)
    return claimed


async def open_due(session: AsyncSession, now: datetime, composer: Composer) -> list[Survey]:
    """Open every survey whose time has come: invitations, and one bulk message per account."""
    due = await _claim_due(
        session, Survey.opens_at <= now, SurveyStatus.SCHEDULED, SurveyStatus.OPEN, opened_at=now
    )
    return [await _open(session, survey, now, composer) for survey in due]


async def _open(session: AsyncSession, survey: Survey, now: datetime, composer: Composer) -> Survey:
    school = await session.get(School, survey.school_id)
    assert school is not None
    people = _audience_people(survey).subquery()
    person_ids = set(await session.scalars(select(people.c.person_id)))
    if survey.kind == "feedback":  # rounds are voluntary: those who turned them off are not asked
        person_ids -= set(
            await session.scalars(
                select(FeedbackSetting.person_id).where(
                    FeedbackSetting.school_id == survey.school_id, FeedbackSetting.rounds_off.is_(True)
                )
            )
        )
    for person_id in sorted(person_ids):
        session.add(SurveyInvitation(school_id=survey.school_id, survey_id=survey.id, person_id=person_id))
    survey.invited_people = len(person_ids)
    await session.flush()
    accounts = await _accounts_of(session, person_ids)
    sent = await _enqueue(
        session, school, accounts, now, lambda locale: composer.invitation(survey, school, locale)
    )
    await audit.record(
        session,
        "survey.opened",
        school_id=survey.school_id,
        target_type="survey",
        target_id=survey.id,
        people=len(person_ids),
        accounts=sent,
    )
    return survey


async def remind_due(session: AsyncSession, now: datetime, composer: Composer) -> int:
    """Remind those who neither answered nor said "not now"; each reminder goes once (claimed)."""
    surveys = list(
        await session.scalars(
            select(Survey).where(Survey.status == SurveyStatus.OPEN.value, Survey.closes_at > now)
        )
    )
    queued = 0
    for survey in surveys:
        number = survey.reminders_sent
        hours = survey.reminder_hours or []
        if number >= min(len(hours), MAX_REMINDERS) or now < survey.closes_at - timedelta(
            hours=hours[number]
        ):
            continue
        claimed = await session.execute(
            update(Survey)
            .where(Survey.id == survey.id, Survey.reminders_sent == number)
            .values(reminders_sent=number + 1)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            continue
        waiting = set(
            await session.scalars(
                select(SurveyInvitation.person_id).where(
                    SurveyInvitation.survey_id == survey.id,
                    SurveyInvitation.responded.is_(False),
                    SurveyInvitation.declined.is_(False),
                )
            )
        )
        # An account that answered for one of its people has answered (one human, one response).
        answered = set(
            await session.scalars(
                select(AccountBinding.account_id)
                .join(SurveyInvitation, SurveyInvitation.person_id == AccountBinding.person_id)
                .where(
                    SurveyInvitation.survey_id == survey.id,
                    or_(SurveyInvitation.responded.is_(True), SurveyInvitation.declined.is_(True)),
                )
            )
        )
        accounts = [a for a in await _accounts_of(session, waiting) if a.id not in answered]
        school = await session.get(School, survey.school_id)
        assert school is not None
        queued += await _enqueue(
            session, school, accounts, now, functools.partial(composer.reminder, survey, school, number + 1)
        )
    return queued


async def close_due(session: AsyncSession, now: datetime) -> list[Survey]:
    """Close surveys whose time is up; anonymous keys are erased, so no answer leads back to anyone."""
    closed = await _claim_due(
        session, Survey.closes_at <= now, SurveyStatus.OPEN, SurveyStatus.CLOSED, closed_at=now
    )
    for survey in closed:
        if survey.anonymous:
            await session.execute(
                update(SurveyResponse)
                .where(SurveyResponse.survey_id == survey.id)
                .values(respondent_key=None)
                .execution_options(synchronize_session=False)
            )
        await audit.record(
            session, "survey.closed", school_id=survey.school_id, target_type="survey", target_id=survey.id
        )
    return closed


# -- answering -----------------------------------------------------------------------------------


def respondent_key(secret_key: bytes, survey_id: int, person_id: int) -> str:
    """Stops a second response without saying whose it is (the key is not in the database)."""
    message = f"survey:{survey_id}:person:{person_id}".encode()
    return hmac.new(secret_key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Invited:
    """An open survey a chat may answer, and the person it answers as (the first one invited)."""

    survey: Survey
    person_id: int
    person_ids: list[int]  # all of this chat's people invited to it
    responded: bool


async def open_for(session: AsyncSession, person_ids: list[int], now: datetime) -> list[Invited]:
    """Open surveys these people (one chat) are invited to, oldest closing first."""
    if not person_ids:
        return []
    rows = (
        await session.execute(
            select(Survey, SurveyInvitation)
            .join(SurveyInvitation, SurveyInvitation.survey_id == Survey.id)
            .where(
                SurveyInvitation.person_id.in_(person_ids),
                Survey.status == SurveyStatus.OPEN.value,
                Survey.closes_at > now,
            )
            .order_by(Survey.closes_at, Survey.id, SurveyInvitation.person_id)
        )
    ).all()
    found: dict[int, Invited] = {}
    for survey, invitation in rows:
        seen = found.get(survey.id)
        if seen is None:
            found[survey.id] = Invited(
                survey, invitation.person_id, [invitation.person_id], invitation.responded
            )
        else:
            found[survey.id] = Invited(
                survey,
                seen.person_id,
                [*seen.person_ids, invitation.person_id],
                seen.responded or invitation.responded,
            )
    return list(found.values())


async def invited(
    session: AsyncSession, survey_id: int, person_ids: list[int], now: datetime
) -> Invited | None:
    """The survey, if it is open and one of these people is invited: checked on every answer."""
    for item in await open_for(session, person_ids, now):
        if item.survey.id == survey_id:
            return item
    return None


async def _segment(session: AsyncSession, person_id: int) -> str:
    """The class of the person's first child (for breakdowns); "" for staff."""
    name = await session.scalar(
        select(SchoolClass.name)
        .join(Student, Student.class_id == SchoolClass.id)
        .join(Guardianship, Guardianship.student_id == Student.id)
        .where(Guardianship.person_id == person_id)
        .order_by(Guardianship.position, Student.id)
        .limit(1)
    )
    return name or ""


async def response_of(
    session: AsyncSession, item: Invited, secret_key: bytes, *, create: bool = False
) -> SurveyResponse | None:
    key = respondent_key(secret_key, item.survey.id, item.person_id)
    response = await session.scalar(
        select(SurveyResponse).where(
            SurveyResponse.survey_id == item.survey.id, SurveyResponse.respondent_key == key
        )
    )
    if response is not None or not create:
        return response
    response = SurveyResponse(
        school_id=item.survey.school_id,
        survey_id=item.survey.id,
        respondent_key=key,
        person_id=None if item.survey.anonymous else item.person_id,
        segment=await _segment(session, item.person_id),
        submitted=False,
    )
    try:
        async with session.begin_nested():
            session.add(response)
    except IntegrityError:  # the same person answering from two chats at once
        return await response_of(session, item, secret_key)
    return response


async def answers_of(session: AsyncSession, response: SurveyResponse) -> dict[int, list[SurveyAnswer]]:
    """The response's answers by question id."""
    found: dict[int, list[SurveyAnswer]] = defaultdict(list)
    rows = await session.scalars(
        select(SurveyAnswer).where(SurveyAnswer.response_id == response.id).order_by(SurveyAnswer.id)
    )
    for row in rows:
        found[row.question_id].append(row)
    return found


async def set_answer(
    session: AsyncSession,
    response: SurveyResponse,
    question: SurveyQuestion,
    *,
    choices: Sequence[int] = (),
    text: str | None = None,
) -> None:
    """Replace this question's answer; an empty one clears it (not for a required question once
    the response counts: `submit` has checked those)."""
    kind = QuestionKind(question.kind)
    picked = sorted(set(choices))
    if kind is QuestionKind.TEXT:
        text = (text or "").strip()
        if len(text) > MAX_TEXT_ANSWER:
            raise SurveyError("text_too_long", max=MAX_TEXT_ANSWER)
        picked = []
    else:
        text = None
        allowed = RATING_SCALE if kind is QuestionKind.RATING else range(len(question.options))
        if any(c not in allowed for c in picked) or (kind is not QuestionKind.MULTIPLE and len(picked) > 1):
            raise SurveyError("bad_choice")
    if not picked and not text and question.required and response.submitted:
        raise SurveyError("required")  # a counted response keeps an answer to every required question
    await session.execute(
        delete(SurveyAnswer).where(
            SurveyAnswer.response_id == response.id, SurveyAnswer.question_id == question.id
        )
    )
    rows: list[dict[str, Any]] = [{"choice": c, "text": None} for c in picked]
    if text or (picked and kind is QuestionKind.MULTIPLE):  # a text, or the "answered" marker row
        rows.append({"choice": None, "text": text or None})
    for row in rows:
        session.add(
            SurveyAnswer(
                survey_id=response.survey_id,
                response_id=response.id,
                question_id=question.id,
                segment=response.segment,
                counted=response.submitted,
                **row,
            )
        )
    await session.flush()


async def missing_required(session: AsyncSession, survey: Survey, response: SurveyResponse) -> list[int]:
    """Positions of required questions with no answer yet."""
    answered = set((await answers_of(session, response)).keys())
    return [q.position for q in survey.questions if q.required and q.id not in answered]


async def submit(session: AsyncSession, item: Invited, response: SurveyResponse, now: datetime) -> None:
    """Count the response. It can still be changed until the survey closes."""
    missing = await missing_required(session, item.survey, response)
    if missing:
        raise SurveyError("unanswered", position=missing[0])
    response.submitted = True
    if not item.survey.anonymous:
        response.submitted_at = now
    await session.execute(
        update(SurveyAnswer)
        .where(SurveyAnswer.response_id == response.id)
        .values(counted=True)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(SurveyInvitation)
        .where(SurveyInvitation.survey_id == item.survey.id, SurveyInvitation.person_id.in_(item.person_ids))
        .values(responded=True)
        .execution_options(synchronize_session=False)
    )
    await session.flush()


async def decline(session: AsyncSession, item: Invited) -> None:
    """ "Not now": no reminders for this survey. Answering later is still possible."""
    await session.execute(
        update(SurveyInvitation)
        .where(SurveyInvitation.survey_id == item.survey.id, SurveyInvitation.person_id.in_(item.person_ids))
        .values(declined=True)
        .execution_options(synchronize_session=False)
    )


# -- counting ------------------------------------------------------------------------------------

MAX_TEXTS_SHOWN = 500


async def results(
    session: AsyncSession, survey: Survey, *, texts_limit: int = MAX_TEXTS_SHOWN
) -> SurveyResults:
    """Counts made by the database (GROUP BY on counted answers), small groups withheld."""
    invited = await session.scalar(
        select(func.count()).select_from(SurveyInvitation).where(SurveyInvitation.survey_id == survey.id)
    )
    respondents = int(
        await session.scalar(
            select(func.count())
            .select_from(SurveyResponse)
            .where(SurveyResponse.survey_id == survey.id, SurveyResponse.submitted.is_(True))
        )
        or 0
    )
    withheld = survey.anonymous and respondents < MIN_GROUP
    # One scan of ix_survey_answer_count gives every option count, the respondents of each
    # question (choice NULL: texts and multiple-choice markers) and the per-class rating sums.
    counts: dict[tuple[int, int | None], int] = defaultdict(int)
    by_segment: dict[tuple[str, int, int | None], int] = {}
    if not withheld:
        rows = await session.execute(
            select(SurveyAnswer.question_id, SurveyAnswer.choice, SurveyAnswer.segment, func.count())
            .where(SurveyAnswer.survey_id == survey.id, SurveyAnswer.counted.is_(True))
            .group_by(SurveyAnswer.question_id, SurveyAnswer.choice, SurveyAnswer.segment)
        )
        for qid, choice, segment, n in rows:
            counts[(qid, choice)] += n
            by_segment[(segment, qid, choice)] = n
    questions = []
    for q in survey.questions:
        kind = QuestionKind(q.kind)
        options: list[OptionCount] = []
        mean = None
        texts: list[str] = []
        if kind is QuestionKind.TEXT:
            answered = counts.get((q.id, None), 0)
            if not withheld and answered >= (MIN_GROUP if survey.anonymous else 1):
                texts = list(
                    await session.scalars(
                        select(SurveyAnswer.text)
                        .where(
                            SurveyAnswer.survey_id == survey.id,
                            SurveyAnswer.question_id == q.id,
                            SurveyAnswer.counted.is_(True),
                            SurveyAnswer.text.is_not(None),
                        )
                        .order_by(SurveyAnswer.id)
                        .limit(texts_limit)
                    )
                )
        elif kind is QuestionKind.RATING:
            options = [OptionCount(str(v), counts.get((q.id, v), 0)) for v in RATING_SCALE]
            answered = sum(o.count for o in options)
            mean = sum(v * counts.get((q.id, v), 0) for v in RATING_SCALE) / answered if answered else None
        else:
            options = [OptionCount(label, counts.get((q.id, i), 0)) for i, label in enumerate(q.options)]
            multiple = kind is QuestionKind.MULTIPLE
            answered = counts.get((q.id, None), 0) if multiple else sum(o.count for o in options)
        questions.append(
            QuestionResult(q.position, q.kind, q.text, q.required, answered, options, mean, texts)
        )
    segments = [] if withheld else await _segments(session, survey, by_segment)
    return SurveyResults(
        survey.id,
        survey.title,
        survey.kind,
        survey.anonymous,
        survey.status,
        int(invited or 0),
        respondents,
        questions,
        segments,
        withheld,
    )


async def _segments(
    session: AsyncSession, survey: Survey, counts: dict[tuple[str, int, int | None], int]
) -> list[SegmentResult]:
    """Per class: respondents and rating means; a class with fewer than MIN_GROUP is not broken down."""
    sizes = dict(
        (
            await session.execute(
                select(SurveyResponse.segment, func.count())
                .where(SurveyResponse.survey_id == survey.id, SurveyResponse.submitted.is_(True))
                .group_by(SurveyResponse.segment)
            )
        ).all()
    )
    if len(sizes) < 2:
        return []  # one class (or none): the breakdown would only repeat the totals
    ratings = {q.id: q.position for q in survey.questions if q.kind == QuestionKind.RATING.value}
    sums: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for (segment, qid, choice), n in counts.items():
        if qid in ratings and choice is not None:
            total = sums[segment][ratings[qid]]
            total[0] += choice * n
            total[1] += n
    return [
        SegmentResult(
            segment or "-",
            n,
            n < MIN_GROUP,
            {}
            if n < MIN_GROUP
            else {
                pos: total / answered for pos, (total, answered) in sorted(sums[segment].items()) if answered
            },
        )
        for segment, n in sorted(sizes.items())
    ]


async def answer_rows(session: AsyncSession, survey: Survey) -> list[AnswerRow]:
    """Every submitted response, for the XLSX and CSV files; none while an anonymous survey is withheld."""
    responses = list(
        await session.execute(
            select(SurveyResponse.id, SurveyResponse.segment, Person.name)
            .outerjoin(Person, Person.id == SurveyResponse.person_id)
            .where(SurveyResponse.survey_id == survey.id, SurveyResponse.submitted.is_(True))
            .order_by(SurveyResponse.id)
        )
    )
    if survey.anonymous and len(responses) < MIN_GROUP:
        return []
    small = set()
    if survey.anonymous:  # a class of one or two would point at its respondents
        sizes: dict[str, int] = defaultdict(int)
        for _, segment, _ in responses:
            sizes[segment] += 1
        small = {s for s, n in sizes.items() if n < MIN_GROUP}
    cells: dict[tuple[int, int], list[str]] = defaultdict(list)
    by_id = {q.id: q for q in survey.questions}
    rows = await session.execute(
        select(SurveyAnswer.response_id, SurveyAnswer.question_id, SurveyAnswer.choice, SurveyAnswer.text)
        .where(SurveyAnswer.survey_id == survey.id, SurveyAnswer.counted.is_(True))
        .order_by(SurveyAnswer.response_id, SurveyAnswer.question_id, SurveyAnswer.choice)
    )
    for response_id, question_id, choice, text in rows:
        q = by_id[question_id]
        if choice is None and text is None:
            continue  # a multiple-choice answer's marker row
        if text is not None:
            cells[(response_id, question_id)].append(text)
        elif q.kind == QuestionKind.RATING.value:
            cells[(response_id, question_id)].append(str(choice))
        elif choice is not None and 0 <= choice < len(q.options):
            cells[(response_id, question_id)].append(q.options[choice])
    return [
        AnswerRow(
            number,
            "" if survey.anonymous else (name or ""),
            "" if segment in small else segment,
            ["; ".join(cells.get((response_id, q.id), [])) for q in survey.questions],
        )
        for number, (response_id, segment, name) in enumerate(responses, start=1)
    ]


# -- feedback, over time -------------------------------------------------------------------------


async def feedback_trends(session: AsyncSession, school_id: int) -> list[TrendRow]:
    """Feedback rounds per month and group: respondents and the mean of the service rating."""
    school = await session.get(School, school_id)
    if school is None:
        return []
    rating = (
        select(
            SurveyAnswer.survey_id.label("survey_id"),
            func.count().label("n"),
            func.sum(SurveyAnswer.choice).label("total"),
        )
        .join(SurveyQuestion, SurveyQuestion.id == SurveyAnswer.question_id)
        .where(SurveyAnswer.counted.is_(True), SurveyQuestion.kind == QuestionKind.RATING.value)
        .group_by(SurveyAnswer.survey_id)
        .subquery()
    )
    responded = (
        select(SurveyResponse.survey_id.label("survey_id"), func.count().label("n"))
        .where(SurveyResponse.submitted.is_(True))
        .group_by(SurveyResponse.survey_id)
        .subquery()
    )
    rows = await session.execute(
        select(Survey.opens_at, ServiceGroup.name, responded.c.n, rating.c.n, rating.c.total)
        .outerjoin(ServiceGroup, ServiceGroup.id == Survey.group_id)
        .outerjoin(responded, responded.c.survey_id == Survey.id)
        .outerjoin(rating, rating.c.survey_id == Survey.id)
        .where(
            Survey.school_id == school_id,
            Survey.kind == "feedback",
            Survey.status.in_([SurveyStatus.OPEN.value, SurveyStatus.CLOSED.value]),
        )
    )
    sums: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for opens_at, group, respondents, rated, total in rows:
        key = (notices.local(opens_at, school).strftime("%Y-%m"), group or "-")
        sums[key][0] += respondents or 0
        sums[key][1] += rated or 0
        sums[key][2] += total or 0
    return [
        TrendRow(
            month,
            group,
            n,
            None if n < MIN_GROUP or not rated else round(total / rated, 2),
            n < MIN_GROUP,
        )
        for (month, group), (n, rated, total) in sorted(sums.items())
    ]


async def feedback_comments(session: AsyncSession, school_id: int, limit: int = 200) -> list[Comment]:
    """Comments and concerns sent with /feedback, newest first."""
    rows = await session.execute(
        select(Feedback.received_on, ServiceGroup.name, Feedback.text, Person.name)
        .outerjoin(ServiceGroup, ServiceGroup.id == Feedback.group_id)
        .outerjoin(Person, Person.id == Feedback.person_id)
        .where(Feedback.school_id == school_id)
        .order_by(Feedback.received_on.desc(), Feedback.id.desc())
        .limit(limit)
    )
    return [Comment(day, group or "", text, who or "") for day, group, text, who in rows]


# -- summaries -----------------------------------------------------------------------------------


async def readers(session: AsyncSession, school_id: int) -> list[int]:
    """Who receives results: the parent committee (家委会) and the school's administrators."""
    return list(
        await session.scalars(
            select(PersonRole.person_id)
            .where(
                PersonRole.school_id == school_id,
                PersonRole.role.in_([Role.COMMITTEE.value, Role.ADMIN.value]),
            )
            .distinct()
            .order_by(PersonRole.person_id)
        )
    )


async def awaiting_summary(session: AsyncSession) -> list[Survey]:
    """Closed surveys whose results have not gone out yet (a crash in between loses nothing)."""
    return list(
        await session.scalars(
            select(Survey)
            .where(
                Survey.status == SurveyStatus.CLOSED.value,
                Survey.kind == "survey",
                Survey.summary_sent_at.is_(None),
            )
            .order_by(Survey.id)
        )
    )


async def claim_summary(session: AsyncSession, survey_id: int, now: datetime) -> bool:
    """Mark the summary sent, in the transaction that queues it; False if another pass did."""
    claimed = await session.execute(
        update(Survey)
        .where(Survey.id == survey_id, Survey.summary_sent_at.is_(None))
        .values(summary_sent_at=now)
        .execution_options(synchronize_session=False)
    )
    return getattr(claimed, "rowcount", 0) == 1


async def audience_size(session: AsyncSession, survey: Survey) -> int:
    """How many people the survey's audience holds now (it is resolved again when it opens)."""
    people = _audience_people(survey).subquery()
    return int(await session.scalar(select(func.count(func.distinct(people.c.person_id)))) or 0)
