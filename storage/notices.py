"""School notices: audiences, delivery rows, acknowledgements, reminders, digests and quiet hours.

Plain async functions taking a session and an explicit `now`; the caller owns the transaction.
Texts are not made here (storage does not import messages): the caller passes a `Composer` that
turns a notice into an outbox payload in the recipient's language.
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Select, func, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, outbox
from storage.models import (
    AccountBinding,
    DeliveryStatus,
    Guardianship,
    Lane,
    Notice,
    NoticeDelivery,
    NoticePreference,
    NoticeStatus,
    Outbox,
    OutboxStatus,
    Person,
    PersonRole,
    PlatformAccount,
    Role,
    School,
    SchoolClass,
    Student,
)

AUDIENCE_KINDS = ("school", "grade", "class", "role")
DEFAULT_QUIET_HOURS = "21:00-07:00"
QUIET_PRESETS = (DEFAULT_QUIET_HOURS, "22:00-07:00", "")
DIGEST_PRESETS = ("18:00", "20:00")
MAX_REMINDERS = 2
MAX_TITLE = 200
MAX_BODY = 3500  # a notice, its heading and the acknowledgement line fit one Telegram message
MAX_ACK_HOURS = 30 * 24
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class NoticeError(ValueError):
    """A problem the administrator can fix; `key` names its text (`notice_error.<key>`)."""

    def __init__(self, key: str, **params: object) -> None:
        self.key, self.params = key, params
        super().__init__(f"{key} {params}")


# -- time ----------------------------------------------------------------------------------------


def zone(school: School) -> ZoneInfo:
    return ZoneInfo(school.timezone)


def local(moment: datetime, school: School) -> datetime:
    """A stored UTC instant as the school's wall-clock time."""
    return moment.astimezone(zone(school))


def parse_local(text: str, school: School) -> datetime:
    """`YYYY-MM-DD HH:MM` in the school's time zone, as an aware UTC datetime."""
    try:
        naive = datetime.strptime(" ".join(text.replace("T", " ").split()), "%Y-%m-%d %H:%M")
    except ValueError:
        raise NoticeError("bad_time", value=text) from None
    return naive.replace(tzinfo=zone(school)).astimezone(UTC)


def parse_hhmm(text: str) -> time:
    match = _HHMM.fullmatch(text.strip())
    if match is None:
        raise NoticeError("bad_clock", value=text)
    return time(int(match.group(1)), int(match.group(2)))


def quiet_until(now: datetime, tz: ZoneInfo, quiet_hours: str) -> datetime | None:
    """When the quiet hours that `now` falls in end (UTC), or None outside quiet hours."""
    if not quiet_hours:
        return None
    start_text, _, end_text = quiet_hours.partition("-")
    start, end = parse_hhmm(start_text), parse_hhmm(end_text)
    if start == end:
        return None
    here = now.astimezone(tz)
    clock = here.time().replace(tzinfo=None)
    if start < end:
        inside, end_day = start <= clock < end, here.date()
    else:  # over midnight, as 21:00-07:00
        inside = clock >= start or clock < end
        end_day = here.date() + timedelta(days=1) if clock >= start else here.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


def deliver_after(now: datetime, tz: ZoneInfo, preference: Preference, lane: Lane = Lane.BULK) -> datetime:
    """The outbox `not_before` for a message: safety messages go now; others wait out quiet hours."""
    if lane is Lane.SAFETY:
        return now
    return quiet_until(now, tz, preference.quiet_hours) or now


def next_digest(after: datetime, tz: ZoneInfo, digest_time: str) -> datetime:
    """The first digest time strictly after `after` (UTC)."""
    clock = parse_hhmm(digest_time)
    here = after.astimezone(tz)
    candidate = datetime.combine(here.date(), clock, tzinfo=tz)
    if candidate <= here:
        candidate = datetime.combine(here.date() + timedelta(days=1), clock, tzinfo=tz)
    return candidate.astimezone(UTC)


def cron_trigger(expr: str, tz: ZoneInfo | str) -> CronTrigger:
    """A trigger for a standard crontab line (`0 16 * * fri`).

    Weekday numbers follow crontab (0 and 7 are Sunday); APScheduler 3 counts from Monday, so
    numbers are turned into names first.
    """
    fields = expr.split()
    if len(fields) != 5 or len(expr) > 100:
        raise NoticeError("bad_cron", value=expr)
    fields[4] = re.sub(r"(?<![/\d])(\d+)", _weekday_name, fields[4])
    try:
        return CronTrigger(
            minute=fields[0],
            hour=fields[1],
            day=fields[2],
            month=fields[3],
            day_of_week=fields[4],
            timezone=tz,
        )
    except ValueError:
        raise NoticeError("bad_cron", value=expr) from None


def _weekday_name(match: re.Match[str]) -> str:
    number = int(match.group(1))
    return _CRON_WEEKDAYS[number % 7] if number <= 7 else match.group(1)  # 8+ stays, and is refused


def next_fire(expr: str, school: School, now: datetime) -> datetime:
    fire = cron_trigger(expr, zone(school)).get_next_fire_time(None, now)
    if fire is None:
        raise NoticeError("bad_cron", value=expr)
    return fire.astimezone(UTC)


def latest_fire(expr: str, school: School, now: datetime, window: timedelta) -> datetime | None:
    """The last time the series was due at or before `now`, looking back at most `window`."""
    trigger = cron_trigger(expr, zone(school))
    fire = trigger.get_next_fire_time(None, now - window)
    found = None
    while fire is not None and fire <= now:
        found = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return found.astimezone(UTC) if found else None


# -- audiences -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """Who a notice is for: the whole school, a grade, a class (by name) or everyone with a role."""

    kind: str
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> Audience:
        """`school`, `grade:一年级`, `class:一年级(1)班` or `role:teacher`."""
        kind, _, value = text.strip().partition(":")
        kind, value = kind.strip().lower(), value.strip()
        if kind not in AUDIENCE_KINDS or (kind == "school") != (not value):
            raise NoticeError("bad_audience", value=text)
        return cls(kind, value)

    def __str__(self) -> str:
        return self.kind if self.kind == "school" else f"{self.kind}:{self.value}"


def audience_of(notice: Notice) -> Audience:
    return Audience(notice.audience_kind, notice.audience_value)


def _guardians(school_id: int) -> Select[Any]:
    return (
        select(Guardianship.person_id.label("person_id"))
        .join(Student, Student.id == Guardianship.student_id)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(Guardianship.school_id == school_id, Student.active.is_(True))
    )


def audience_people(school_id: int, audience: Audience) -> Any:
    """A selectable of the audience's person ids (guardians only of pupils still on the roll)."""
    if audience.kind == "grade":
        return _guardians(school_id).where(SchoolClass.grade == audience.value)
    if audience.kind == "class":
        return _guardians(school_id).where(SchoolClass.name == audience.value)
    if audience.kind == "role" and audience.value == Role.PARENT.value:
        return _guardians(school_id)
    if audience.kind == "role":
        return select(PersonRole.person_id.label("person_id")).where(
            PersonRole.school_id == school_id, PersonRole.role == audience.value
        )
    staff = select(PersonRole.person_id.label("person_id")).where(
        PersonRole.school_id == school_id, PersonRole.role != Role.PARENT.value
    )
    return union(_guardians(school_id), staff)


async def check_audience(session: AsyncSession, school_id: int, audience: Audience) -> None:
    """Refuse an audience that names no grade, class or role of this school."""
    if audience.kind == "role" and audience.value not in {r.value for r in Role}:
        raise NoticeError("unknown_role", value=audience.value)
    column = {"grade": SchoolClass.grade, "class": SchoolClass.name}.get(audience.kind)
    if column is not None:
        found = await session.scalar(
            select(SchoolClass.id)
            .where(SchoolClass.school_id == school_id, column == audience.value)
            .limit(1)
        )
        if found is None:
            raise NoticeError(f"unknown_{audience.kind}", value=audience.value)


@dataclass(frozen=True)
class Recipients:
    people: int
    account_ids: list[int]
    not_joined: int  # people of the audience with no chat account yet


async def resolve_audience(session: AsyncSession, school_id: int, audience: Audience) -> Recipients:
    """The audience's people, their accounts (each once) and how many have not joined the bot."""
    people = audience_people(school_id, audience).subquery()
    person_ids = set(await session.scalars(select(people.c.person_id)))
    bindings = (
        await session.execute(
            select(AccountBinding.account_id, AccountBinding.person_id)
            .where(AccountBinding.person_id.in_(select(people.c.person_id)))
            .order_by(AccountBinding.account_id)
        )
    ).all()
    joined = {person_id for _, person_id in bindings}
    accounts = sorted({account_id for account_id, _ in bindings})
    return Recipients(len(person_ids), accounts, len(person_ids - joined))


@dataclass(frozen=True)
class ClassChoice:
    id: int
    name: str
    grade: str


@dataclass(frozen=True)
class AudienceChoices:
    grades: list[ClassChoice]  # the first class of each grade stands for its grade (short button ids)
    classes: list[ClassChoice]


async def audience_choices(session: AsyncSession, school_id: int) -> AudienceChoices:
    classes = (
        await session.execute(
            select(SchoolClass.id, SchoolClass.name, SchoolClass.grade)
            .where(SchoolClass.school_id == school_id)
            .order_by(SchoolClass.id)  # roster order: 一年级 before 二年级 before 三年级
        )
    ).all()
    found = [ClassChoice(cid, name, grade) for cid, name, grade in classes]
    firsts: dict[str, ClassChoice] = {}
    for choice in found:
        firsts.setdefault(choice.grade, choice)
    return AudienceChoices(list(firsts.values()), found)


# -- preferences ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preference:
    """Instant (digest_time None) or a daily digest at HH:MM; quiet hours "HH:MM-HH:MM" or ""."""

    digest_time: str | None = None
    quiet_hours: str = DEFAULT_QUIET_HOURS


async def get_preference(session: AsyncSession, account_id: int) -> Preference:
    row = await session.get(NoticePreference, account_id)
    return Preference(row.digest_time, row.quiet_hours) if row else Preference()


async def preferences_of(session: AsyncSession, account_ids: Iterable[int]) -> dict[int, Preference]:
    ids = list(account_ids)
    rows = await session.scalars(select(NoticePreference).where(NoticePreference.account_id.in_(ids)))
    return {r.account_id: Preference(r.digest_time, r.quiet_hours) for r in rows}


async def set_preference(
    session: AsyncSession, account_id: int, preference: Preference, now: datetime, composer: Composer
) -> Preference:
    """Store the choice; switching back to instant hands over what the digest was holding, now."""
    if preference.digest_time is not None:
        parse_hhmm(preference.digest_time)
    if preference.quiet_hours:
        start, _, end = preference.quiet_hours.partition("-")
        parse_hhmm(start), parse_hhmm(end)
    row = await session.get(NoticePreference, account_id)
    if row is None:
        row = NoticePreference(account_id=account_id)
        session.add(row)
    row.digest_time, row.quiet_hours = preference.digest_time, preference.quiet_hours
    await session.flush()
    if preference.digest_time is None:
        await send_digests(session, now, composer, account_id=account_id, everything=True)
    return preference


# -- composing and issuing -----------------------------------------------------------------------


class Composer(Protocol):
    """Makes outbox payloads (a neutral Reply as a dict) in the recipient's language."""

    def notice(self, notice: Notice, school: School, delivery_id: int, locale: str) -> dict[str, Any]: ...

    def reminder(
        self, notice: Notice, school: School, delivery_id: int, number: int, locale: str
    ) -> dict[str, Any]: ...

    def digest(self, notices: Sequence[Notice], school: School, locale: str) -> dict[str, Any]: ...


@dataclass
class Draft:
    """What an administrator composed, before it is stored."""

    title: str
    body: str
    audience: Audience
    urgent: bool = False
    send_at: datetime | None = None  # None: now
    cron: str | None = None
    ack_deadline: datetime | None = None
    ack_within_hours: int | None = None
    attachment_name: str | None = None
    attachment_path: str | None = None


@dataclass(frozen=True)
class Issued:
    notice: Notice
    accounts: int = 0
    held: int = 0
    not_joined: int = 0
    people: int = 0


async def check_draft(session: AsyncSession, school: School, draft: Draft, now: datetime) -> None:
    """Refuse what cannot be sent as asked, naming the problem."""
    if not draft.title.strip() or len(draft.title) > MAX_TITLE:
        raise NoticeError("bad_title", max=MAX_TITLE)
    if not draft.body.strip() or len(draft.body) > MAX_BODY:
        raise NoticeError("bad_body", max=MAX_BODY)
    await check_audience(session, school.id, draft.audience)
    if draft.cron is not None:
        next_fire(draft.cron, school, now)
        if draft.send_at is not None:
            raise NoticeError("at_and_cron")
        if draft.ack_deadline is not None:
            raise NoticeError("ack_by_recurring")
    if draft.send_at is not None and draft.send_at <= now:
        raise NoticeError("in_the_past", value=local(draft.send_at, school).strftime("%Y-%m-%d %H:%M"))
    if draft.ack_within_hours is not None and not 1 <= draft.ack_within_hours <= MAX_ACK_HOURS:
        raise NoticeError("bad_ack_hours", max=MAX_ACK_HOURS)
    if draft.ack_deadline is not None and draft.ack_deadline <= (draft.send_at or now):
        raise NoticeError("ack_before_send")


async def create_notice(
    session: AsyncSession,
    school: School,
    draft: Draft,
    now: datetime,
    composer: Composer,
    *,
    author_person_id: int | None = None,
    actor_account_id: int | None = None,
) -> Issued:
    """Store a notice: sent now (outbox rows in this transaction), scheduled, or a recurring series."""
    await check_draft(session, school, draft, now)
    status = NoticeStatus.SENT
    if draft.cron is not None:
        status = NoticeStatus.RECURRING
    elif draft.send_at is not None:
        status = NoticeStatus.SCHEDULED
    notice = Notice(
        school_id=school.id,
        author_person_id=author_person_id,
        title=draft.title.strip(),
        body=draft.body.strip(),
        audience_kind=draft.audience.kind,
        audience_value=draft.audience.value,
        urgent=draft.urgent,
        attachment_name=draft.attachment_name,
        attachment_path=draft.attachment_path,
        status=status.value,
        send_at=draft.send_at,
        cron=draft.cron,
        ack_deadline=draft.ack_deadline,
        ack_within_hours=draft.ack_within_hours,
        people_count=0,
        not_joined_count=0,
    )
    session.add(notice)
    await session.flush()
    await audit.record(
        session,
        "notice.created",
        school_id=school.id,
        actor_person_id=author_person_id,
        actor_account_id=actor_account_id,
        target_type="notice",
        target_id=notice.id,
        audience=draft.audience.kind,
        status=status.value,
        ack=draft.ack_deadline is not None or draft.ack_within_hours is not None,
    )
    if status is NoticeStatus.SENT:
        return await _issue(session, notice, school, now, composer)
    return Issued(notice)


async def _issue(
    session: AsyncSession, notice: Notice, school: School, now: datetime, composer: Composer
) -> Issued:
    """Deliver a notice to its audience: one delivery and (unless held for a digest) one bulk
    outbox row per recipient account, written with the notice's change to "sent"."""
    notice.status = NoticeStatus.SENT.value
    notice.sent_at = now
    if notice.ack_within_hours and notice.ack_deadline is None:
        notice.ack_deadline = now + timedelta(hours=notice.ack_within_hours)
    recipients = await resolve_audience(session, school.id, audience_of(notice))
    notice.people_count, notice.not_joined_count = recipients.people, recipients.not_joined
    people = audience_people(school.id, audience_of(notice)).subquery()
    rows = (
        await session.execute(
            select(PlatformAccount, NoticePreference)
            .outerjoin(NoticePreference, NoticePreference.account_id == PlatformAccount.id)
            .where(
                PlatformAccount.id.in_(
                    select(AccountBinding.account_id).where(
                        AccountBinding.person_id.in_(select(people.c.person_id))
                    )
                )
            )
            .order_by(PlatformAccount.id)
        )
    ).all()
    tz = zone(school)
    held = 0
    for account, stored in rows:
        preference = Preference(stored.digest_time, stored.quiet_hours) if stored else Preference()
        delivery = NoticeDelivery(
            school_id=school.id, notice_id=notice.id, account_id=account.id, created_at=now, reminders_sent=0
        )
        # Only notices that neither are urgent nor ask for an acknowledgement wait for a digest.
        if preference.digest_time and not notice.urgent and notice.ack_deadline is None:
            delivery.status = DeliveryStatus.HELD.value
            session.add(delivery)
            held += 1
            continue
        delivery.status = DeliveryStatus.QUEUED.value
        session.add(delivery)
        await session.flush()
        row = await outbox.enqueue(
            session,
            account.id,
            composer.notice(notice, school, delivery.id, account.locale),
            lane=Lane.BULK,
            school_id=school.id,
            not_before=deliver_after(now, tz, preference),
        )
        delivery.outbox_id = row.id
    await session.flush()
    await audit.record(
        session,
        "notice.sent",
        school_id=school.id,
        target_type="notice",
        target_id=notice.id,
        accounts=len(recipients.account_ids),
        held=held,
    )
    return Issued(notice, len(recipients.account_ids), held, recipients.not_joined, recipients.people)


async def run_scheduled(
    session: AsyncSession, notice_id: int, now: datetime, composer: Composer, window: timedelta
) -> Issued | None:
    """The scheduler's call: issue a due one-off notice, or this firing of a series.

    Safe to call twice: a one-off is claimed by a conditional update, and a series issues at most
    one copy per fire time (unique series_id + scheduled_for). `window` is the misfire grace.
    """
    notice = await session.get(Notice, notice_id)
    if notice is None:
        return None
    school = await session.get(School, notice.school_id)
    assert school is not None
    if notice.status == NoticeStatus.SCHEDULED.value:
        claimed = await session.execute(
            update(Notice)
            .where(Notice.id == notice_id, Notice.status == NoticeStatus.SCHEDULED.value)
            .values(status=NoticeStatus.SENT.value, sent_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return None
        await session.refresh(notice)
        return await _issue(session, notice, school, now, composer)
    if notice.status != NoticeStatus.RECURRING.value or notice.cron is None:
        return None
    fired = latest_fire(notice.cron, school, now, window) or now.replace(second=0, microsecond=0)
    copy = Notice(
        school_id=notice.school_id,
        series_id=notice.id,
        author_person_id=notice.author_person_id,
        title=notice.title,
        body=notice.body,
        audience_kind=notice.audience_kind,
        audience_value=notice.audience_value,
        urgent=notice.urgent,
        attachment_name=notice.attachment_name,
        attachment_path=notice.attachment_path,
        status=NoticeStatus.SCHEDULED.value,
        scheduled_for=fired,
        ack_within_hours=notice.ack_within_hours,
        people_count=0,
        not_joined_count=0,
    )
    try:
        async with session.begin_nested():
            session.add(copy)
    except IntegrityError:
        return None  # this firing was issued already
    return await _issue(session, copy, school, now, composer)


async def cancel(session: AsyncSession, notice_id: int, school_id: int | None = None) -> Notice:
    """Stop a scheduled notice or a series; what was already sent stays sent."""
    notice = await session.get(Notice, notice_id)
    if notice is None or (school_id is not None and notice.school_id != school_id):
        raise NoticeError("no_notice", id=notice_id)
    if notice.status not in (NoticeStatus.SCHEDULED.value, NoticeStatus.RECURRING.value):
        raise NoticeError("not_cancellable", id=notice_id, status=notice.status)
    notice.status = NoticeStatus.CANCELLED.value
    await audit.record(
        session, "notice.cancelled", school_id=notice.school_id, target_type="notice", target_id=notice.id
    )
    await session.flush()
    return notice


@dataclass(frozen=True)
class Schedule:
    """A job the scheduler must hold for a notice: a date (one-off) or a crontab line (series)."""

    notice_id: int
    timezone: str
    run_at: datetime | None = None
    cron: str | None = None


async def schedules(session: AsyncSession, now: datetime, grace: timedelta) -> list[Schedule]:
    """Every notice that needs a job. One-offs missed by more than `grace` are marked missed."""
    rows = (
        await session.execute(
            select(Notice, School.timezone)
            .join(School, School.id == Notice.school_id)
            .where(Notice.status.in_([NoticeStatus.SCHEDULED.value, NoticeStatus.RECURRING.value]))
            .where(Notice.series_id.is_(None))
            .order_by(Notice.id)
        )
    ).all()
    found = []
    for notice, tz in rows:
        if notice.status == NoticeStatus.RECURRING.value and notice.cron:
            found.append(Schedule(notice.id, tz, cron=notice.cron))
        elif notice.send_at is not None and notice.send_at >= now - grace:
            found.append(Schedule(notice.id, tz, run_at=notice.send_at))
        elif notice.status == NoticeStatus.SCHEDULED.value:
            notice.status = NoticeStatus.MISSED.value
            await audit.record(
                session,
                "notice.missed",
                school_id=notice.school_id,
                target_type="notice",
                target_id=notice.id,
            )
    await session.flush()
    return found


# -- digests and reminders -----------------------------------------------------------------------


async def send_digests(
    session: AsyncSession,
    now: datetime,
    composer: Composer,
    *,
    account_id: int | None = None,
    everything: bool = False,
) -> int:
    """One outbox row per account whose digest time has come, listing the notices it held.

    A notice held at 19:00 for an 18:00 digest waits for tomorrow's. `everything` hands over all
    held notices at once (the account switched back to instant delivery). Returns rows written.
    """
    query = (
        select(NoticeDelivery, Notice)
        .join(Notice, Notice.id == NoticeDelivery.notice_id)
        .where(NoticeDelivery.status == DeliveryStatus.HELD.value)
        .order_by(NoticeDelivery.account_id, NoticeDelivery.id)
    )
    if account_id is not None:
        query = query.where(NoticeDelivery.account_id == account_id)
    held = (await session.execute(query)).all()
    by_account: dict[int, list[tuple[NoticeDelivery, Notice]]] = defaultdict(list)
    for delivery, notice in held:
        by_account[delivery.account_id].append((delivery, notice))
    preferences = await preferences_of(session, by_account)
    written = 0
    for acc_id, items in by_account.items():
        preference = preferences.get(acc_id, Preference())
        school = await session.get(School, items[0][0].school_id)
        account = await session.get(PlatformAccount, acc_id)
        assert school is not None and account is not None
        tz = zone(school)
        if not everything and preference.digest_time:
            digest_time = preference.digest_time
            items = [(d, n) for d, n in items if next_digest(d.created_at, tz, digest_time) <= now]
        if not items:
            continue
        row = await outbox.enqueue(
            session,
            acc_id,
            composer.digest([n for _, n in items], school, account.locale),
            lane=Lane.BULK,
            school_id=school.id,
            not_before=deliver_after(now, tz, preference),
        )
        for delivery, _ in items:
            delivery.status, delivery.outbox_id = DeliveryStatus.QUEUED.value, row.id
        written += 1
    await session.flush()
    return written


def reminder_due(base: datetime, deadline: datetime, number: int) -> datetime:
    """Reminder `number` (1 or 2) falls at 1/3 and 2/3 of the time between delivery and deadline."""
    return base + (deadline - base) * number / (MAX_REMINDERS + 1)


async def send_reminders(session: AsyncSession, now: datetime, composer: Composer) -> int:
    """Remind those who have not acknowledged, at most MAX_REMINDERS times, before the deadline.

    Only a delivery that reached the person is followed up (a failed one is the admin's to
    chase), and never in the person's quiet hours: the reminder waits for the next pass after
    them, so an acknowledgement made in the meantime stops it. Returns reminders queued.
    """
    rows = (
        await session.execute(
            select(NoticeDelivery, Notice, Outbox.sent_at)
            .join(Notice, Notice.id == NoticeDelivery.notice_id)
            .join(Outbox, Outbox.id == NoticeDelivery.outbox_id)
            .where(
                Notice.ack_deadline > now,
                NoticeDelivery.acked_at.is_(None),
                NoticeDelivery.reminders_sent < MAX_REMINDERS,
                NoticeDelivery.status == DeliveryStatus.QUEUED.value,
                Outbox.status == OutboxStatus.SENT.value,
            )
            .order_by(NoticeDelivery.id)
        )
    ).all()
    preferences = await preferences_of(session, {d.account_id for d, _, _ in rows})
    queued = 0
    for delivery, notice, reached_at in rows:
        assert notice.ack_deadline is not None
        base = max(reached_at or notice.sent_at or now, notice.sent_at or now)
        number = delivery.reminders_sent + 1
        if now < reminder_due(base, notice.ack_deadline, number):
            continue
        # Two reminders held back by quiet hours must not arrive minutes apart.
        gap = (notice.ack_deadline - base) / (MAX_REMINDERS + 1) / 2
        if delivery.last_reminded_at is not None and now < delivery.last_reminded_at + gap:
            continue
        school = await session.get(School, notice.school_id)
        account = await session.get(PlatformAccount, delivery.account_id)
        assert school is not None and account is not None
        if quiet_until(now, zone(school), preferences.get(account.id, Preference()).quiet_hours):
            continue
        await outbox.enqueue(
            session,
            account.id,
            composer.reminder(notice, school, delivery.id, number, account.locale),
            lane=Lane.BULK,
            school_id=school.id,
            not_before=now,
        )
        delivery.reminders_sent, delivery.last_reminded_at = number, now
        queued += 1
    await session.flush()
    return queued


# -- acknowledgements ----------------------------------------------------------------------------


class AckOutcome(enum.StrEnum):
    ACKED = "acked"
    ALREADY = "already"  # a replayed press: refused, nothing changes
    NOT_ASKED = "not_asked"
    REFUSED = "refused"  # no such delivery, or not this account's


@dataclass(frozen=True)
class AckResult:
    outcome: AckOutcome
    notice: Notice | None = None
    delivery: NoticeDelivery | None = None
    late: bool = False


async def _speaks_for_recipient(session: AsyncSession, delivery: NoticeDelivery, account_id: int) -> bool:
    """The delivery's own account, or another account of the same roster person (the sender may
    re-route a message to it when the first proved unreachable)."""
    if delivery.account_id == account_id:
        return True
    mine = select(AccountBinding.person_id).where(AccountBinding.account_id == account_id)
    shared = await session.scalar(
        select(AccountBinding.id)
        .where(AccountBinding.account_id == delivery.account_id, AccountBinding.person_id.in_(mine))
        .limit(1)
    )
    return shared is not None


async def acknowledge(session: AsyncSession, delivery_id: int, account_id: int, now: datetime) -> AckResult:
    """Record that the recipient read their notice. Only the recipient may; anything else (no such
    delivery, someone else's, a second press, a notice that asks for nothing) is refused and written
    to the audit log."""
    delivery = await session.get(NoticeDelivery, delivery_id) if delivery_id > 0 else None
    if delivery is None or not await _speaks_for_recipient(session, delivery, account_id):
        await audit.record(
            session,
            "notice.ack_refused",
            school_id=delivery.school_id if delivery else None,
            actor_account_id=account_id,
            target_type="notice_delivery",
            target_id=delivery_id,
            reason="unknown" if delivery is None else "not_yours",
        )
        return AckResult(AckOutcome.REFUSED)
    notice = await session.get(Notice, delivery.notice_id)
    assert notice is not None
    if notice.ack_deadline is None or delivery.acked_at is not None:
        outcome = AckOutcome.NOT_ASKED if notice.ack_deadline is None else AckOutcome.ALREADY
        await audit.record(
            session,
            "notice.ack_refused",
            school_id=delivery.school_id,
            actor_account_id=account_id,
            target_type="notice_delivery",
            target_id=delivery_id,
            reason=outcome.value,
        )
        return AckResult(outcome, notice, delivery)
    delivery.acked_at = now
    await audit.record(
        session,
        "notice.acked",
        school_id=delivery.school_id,
        actor_account_id=account_id,
        target_type="notice_delivery",
        target_id=delivery_id,
    )
    await session.flush()
    return AckResult(AckOutcome.ACKED, notice, delivery, late=now > notice.ack_deadline)


# -- reading -------------------------------------------------------------------------------------


async def delivery_of(
    session: AsyncSession, delivery_id: int, account_id: int
) -> tuple[NoticeDelivery, Notice] | None:
    """The recipient's delivery and its notice, or None (someone else's, or no such delivery)."""
    delivery = await session.get(NoticeDelivery, delivery_id)
    if delivery is None or not await _speaks_for_recipient(session, delivery, account_id):
        return None
    notice = await session.get(Notice, delivery.notice_id)
    return (delivery, notice) if notice is not None else None


async def recent_for_account(
    session: AsyncSession, account_id: int, limit: int = 10
) -> list[tuple[NoticeDelivery, Notice]]:
    rows = await session.execute(
        select(NoticeDelivery, Notice)
        .join(Notice, Notice.id == NoticeDelivery.notice_id)
        .where(NoticeDelivery.account_id == account_id)
        .order_by(NoticeDelivery.id.desc())
        .limit(limit)
    )
    return [(d, n) for d, n in rows.all()]


async def recent_for_school(session: AsyncSession, school_id: int, limit: int = 10) -> list[Notice]:
    return list(
        await session.scalars(
            select(Notice).where(Notice.school_id == school_id).order_by(Notice.id.desc()).limit(limit)
        )
    )


async def attachment_visible_to(session: AsyncSession, account_id: int, path: str) -> bool:
    """Only someone a notice with this attachment was delivered to may download it."""
    found = await session.scalar(
        select(NoticeDelivery.id)
        .join(Notice, Notice.id == NoticeDelivery.notice_id)
        .where(NoticeDelivery.account_id == account_id, Notice.attachment_path == path)
        .limit(1)
    )
    return found is not None


@dataclass(frozen=True)
class Child:
    student: str
    class_name: str
    relation: str


@dataclass(frozen=True)
class ReportRow:
    """One recipient account (or one person of the audience who has no account yet)."""

    names: tuple[str, ...]
    children: tuple[Child, ...]
    roles: tuple[str, ...]
    status: str  # digest, pending, sent, failed, unreachable, not_joined
    acked_at: datetime | None = None
    reminders: int = 0
    delivery_id: int | None = None


@dataclass
class Report:
    notice: Notice
    school: School
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[ReportRow] = field(default_factory=list)
    issues: list[Notice] = field(default_factory=list)
    issue_counts: dict[int, tuple[int, int]] = field(default_factory=dict)  # accounts, acknowledged

    @property
    def asks_ack(self) -> bool:
        return self.notice.ack_deadline is not None

    @property
    def not_acknowledged(self) -> list[ReportRow]:
        if not self.asks_ack:
            return []
        return [r for r in self.rows if r.delivery_id is not None and r.acked_at is None]


REPORT_COUNTS = (
    "accounts",
    "digest",
    "pending",
    "sent",
    "failed",
    "unreachable",
    "not_joined",
    "acknowledged",
)


async def report(session: AsyncSession, notice_id: int, school_id: int | None = None) -> Report:
    """Who got the notice, who could not be reached, who acknowledged; a series lists its issues."""
    notice = await session.get(Notice, notice_id)
    if notice is None or (school_id is not None and notice.school_id != school_id):
        raise NoticeError("no_notice", id=notice_id)
    school = await session.get(School, notice.school_id)
    assert school is not None
    result = Report(notice, school, dict.fromkeys(REPORT_COUNTS, 0))
    result.issues = list(
        await session.scalars(select(Notice).where(Notice.series_id == notice.id).order_by(Notice.id.desc()))
    )
    if result.issues:
        counted = await session.execute(
            select(NoticeDelivery.notice_id, func.count(), func.count(NoticeDelivery.acked_at))
            .where(NoticeDelivery.notice_id.in_([i.id for i in result.issues]))
            .group_by(NoticeDelivery.notice_id)
        )
        result.issue_counts = {nid: (total, acked) for nid, total, acked in counted}
    rows = (
        await session.execute(
            select(NoticeDelivery, Outbox.status, PlatformAccount.unreachable_at)
            .join(PlatformAccount, PlatformAccount.id == NoticeDelivery.account_id)
            .outerjoin(Outbox, Outbox.id == NoticeDelivery.outbox_id)
            .where(NoticeDelivery.notice_id == notice.id)
            .order_by(NoticeDelivery.id)
        )
    ).all()
    people = await _people_of_accounts(session, school.id, [d.account_id for d, _, _ in rows])
    for delivery, outbox_status, unreachable_at in rows:
        status = _delivery_status(delivery, outbox_status, unreachable_at)
        names, children, roles = people.get(delivery.account_id, ((), (), ()))
        result.rows.append(
            ReportRow(names, children, roles, status, delivery.acked_at, delivery.reminders_sent, delivery.id)
        )
        result.counts[status] += 1
        result.counts["accounts"] += 1
        result.counts["acknowledged"] += delivery.acked_at is not None
    if notice.sent_at is not None:
        result.rows += await _not_joined(session, school.id, audience_of(notice))
        result.counts["not_joined"] = notice.not_joined_count
    return result


def _delivery_status(
    delivery: NoticeDelivery, outbox_status: str | None, unreachable_at: datetime | None
) -> str:
    if delivery.status == DeliveryStatus.HELD.value:
        return "digest"
    if outbox_status is None or outbox_status == OutboxStatus.SENT.value:
        return "sent"  # no outbox row left: the sender purged it after sending
    if outbox_status == "unreachable":  # the sender's own verdict (the person blocked the bot)
        return "unreachable"
    if outbox_status == OutboxStatus.FAILED.value:
        return "unreachable" if unreachable_at is not None else "failed"
    return "pending"


async def _people_of_accounts(
    session: AsyncSession, school_id: int, account_ids: list[int]
) -> dict[int, tuple[tuple[str, ...], tuple[Child, ...], tuple[str, ...]]]:
    if not account_ids:
        return {}
    bindings = (
        await session.execute(
            select(AccountBinding.account_id, Person.id, Person.name)
            .join(Person, Person.id == AccountBinding.person_id)
            .where(AccountBinding.account_id.in_(account_ids), AccountBinding.school_id == school_id)
            .order_by(AccountBinding.id)
        )
    ).all()
    details = await _details(session, {pid for _, pid, _ in bindings})
    found: dict[int, tuple[tuple[str, ...], tuple[Child, ...], tuple[str, ...]]] = {}
    for account_id, person_id, name in bindings:
        names, children, roles = found.get(account_id, ((), (), ()))
        kids, person_roles = details.get(person_id, ((), ()))
        found[account_id] = (
            (*names, name),
            (*children, *kids),
            tuple(sorted({*roles, *person_roles})),
        )
    return found


async def _details(
    session: AsyncSession, person_ids: set[int]
) -> dict[int, tuple[tuple[Child, ...], tuple[str, ...]]]:
    children: dict[int, list[Child]] = defaultdict(list)
    for person_id, student, class_name, relation in await session.execute(
        select(Guardianship.person_id, Student.name, SchoolClass.name, Guardianship.relation)
        .join(Student, Student.id == Guardianship.student_id)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(Guardianship.person_id.in_(person_ids), Student.active.is_(True))
        .order_by(Student.name)
    ):
        children[person_id].append(Child(student, class_name, relation))
    roles: dict[int, set[str]] = defaultdict(set)
    for person_id, role in await session.execute(
        select(PersonRole.person_id, PersonRole.role).where(PersonRole.person_id.in_(person_ids))
    ):
        roles[person_id].add(role)
    return {pid: (tuple(children[pid]), tuple(sorted(roles[pid]))) for pid in person_ids}


async def _not_joined(session: AsyncSession, school_id: int, audience: Audience) -> list[ReportRow]:
    """People of the audience without a chat account (as of now), so the school can reach them."""
    people = audience_people(school_id, audience).subquery()
    rows = (
        await session.execute(
            select(Person.id, Person.name)
            .where(Person.id.in_(select(people.c.person_id)))
            .where(~Person.id.in_(select(AccountBinding.person_id)))
            .order_by(Person.person_no)
        )
    ).all()
    details = await _details(session, {pid for pid, _ in rows})
    return [ReportRow((name,), *details.get(pid, ((), ())), status="not_joined") for pid, name in rows]
