"""Attendance and handover (考勤、交接班): every child handed to a named, authorised adult.

A handover is one row per child and day (a unique constraint): when two staff confirm the same
child at once, one row is written and the other is told who did it. An adult not on the list needs
the parents' explicit allowance first; nothing here lets a child go without one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, pickup, rosters, vetting
from storage.enrollment import guardian_among, guardians_of
from storage.inserts import insert_new, insert_new_id
from storage.models import (
    Attendance,
    DaySummary,
    GroupDuty,
    Handover,
    HandoverRequest,
    LateAlert,
    PersonRole,
    PickupAdult,
    Role,
    School,
    ServiceGroup,
    Student,
    TermsVersion,
)
from storage.terms import WEEKDAY_ORDER

ESCALATE_AFTER = timedelta(minutes=10)
_MAY_ACT = "handover.may_act"  # session.info: answers of may_act within this transaction


class Outcome(enum.StrEnum):
    OK = "ok"
    FORBIDDEN = "forbidden"
    ALREADY = "already"  # handed over already (maybe by a colleague a second ago)
    NOT_AUTHORISED = "not_authorised"  # that adult may not collect this child today
    WRONG_CODE = "wrong_code"
    NOT_EXPECTED = "not_expected"  # the child is not on today's roster of this group
    PENDING = "pending"  # waiting for the parents' answer


async def on_duty(session: AsyncSession, people: list[int], today: date) -> list[ServiceGroup]:
    """Groups these people are on duty with today (vetting still valid)."""
    return list(
        await session.scalars(
            select(ServiceGroup)
            .where(
                ServiceGroup.active.is_(True),
                exists().where(
                    GroupDuty.group_id == ServiceGroup.id,
                    GroupDuty.person_id.in_(people),
                    vetting.passed_covering(GroupDuty.person_id, today),
                ),
            )
            .order_by(ServiceGroup.id)
        )
    )


async def may_act(session: AsyncSession, people: list[int], group: ServiceGroup, today: date) -> bool:
    """Staff on duty with this group (vetted), or an admin of its school: one query, as it is asked
    on every tap of the handover screen, and asked once per transaction (the handler asks before
    it reads the group's children, the domain operation again before it writes)."""
    transaction = session.sync_session.get_transaction()
    held = session.info.get(_MAY_ACT)
    if held is None or held[0] is not transaction:
        held = session.info[_MAY_ACT] = (transaction, {})
    memo: dict[tuple[tuple[int, ...], int, date], bool] = held[1]
    key = (tuple(people), group.id, today)
    if key not in memo:
        memo[key] = await _may_act(session, people, group, today)
    return memo[key]


async def _may_act(session: AsyncSession, people: list[int], group: ServiceGroup, today: date) -> bool:
    on_duty = exists().where(
        GroupDuty.group_id == group.id,
        GroupDuty.person_id.in_(people),
        vetting.passed_covering(GroupDuty.person_id, today),
    )
    admin = exists().where(
        PersonRole.person_id.in_(people),
        PersonRole.school_id == group.school_id,
        PersonRole.role == Role.ADMIN.value,
    )
    if not group.active:  # only an admin acts on a group no longer running
        return bool(await session.scalar(select(admin)))
    return bool(await session.scalar(select(or_(on_duty, admin))))


@dataclass
class ChildDay:
    student_id: int
    name: str
    class_name: str
    signed: bool
    absence_reason: str | None = None
    present: bool | None = None
    handover: Handover | None = None
    request: HandoverRequest | None = None


@dataclass
class GroupDay:
    group: ServiceGroup
    day: date
    children: list[ChildDay] = field(default_factory=list)
    not_signed: list[ChildDay] = field(default_factory=list)


async def group_day(session: AsyncSession, group: ServiceGroup, day: date, now: datetime) -> GroupDay:
    roster = await rosters.day_roster(session, group, day, now)
    result = GroupDay(group, day)
    ids = [line.student_id for line in roster.expected]
    marks = {
        a.student_id: a
        for a in await session.scalars(
            select(Attendance).where(Attendance.student_id.in_(ids), Attendance.day == day)
        )
    }
    handovers = {
        h.student_id: h
        for h in await session.scalars(
            select(Handover).where(Handover.student_id.in_(ids), Handover.day == day)
        )
    }
    requests = {
        r.student_id: r
        for r in await session.scalars(
            select(HandoverRequest)
            .where(HandoverRequest.student_id.in_(ids), HandoverRequest.day == day)
            .order_by(HandoverRequest.id)
        )
    }
    for line in roster.expected:
        absence = await pickup.absence_on(session, line.student_id, day)
        mark = marks.get(line.student_id)
        result.children.append(
            ChildDay(
                line.student_id,
                line.name,
                line.class_name,
                True,
                absence.reason if absence else None,
                mark.present if mark else None,
                handovers.get(line.student_id),
                requests.get(line.student_id),
            )
        )
    result.not_signed = [ChildDay(x.student_id, x.name, x.class_name, False) for x in roster.not_signed]
    return result


@dataclass
class Marked:
    outcome: Outcome
    # Children expected (no absence reported) but marked absent: their parents get a safety message.
    unexpected_absent: list[int] = field(default_factory=list)


async def mark(
    session: AsyncSession,
    group: ServiceGroup,
    day: date,
    people: list[int],
    now: datetime,
    *,
    present: list[int] | None = None,
    absent: list[int] | None = None,
) -> Marked:
    """Record attendance; `present=None` with `absent=[]` means "all present" for the rest."""
    if not await may_act(session, people, group, day):
        await audit.record(
            session, "attendance.refused", school_id=group.school_id, target_type="group", target_id=group.id
        )
        return Marked(Outcome.FORBIDDEN)
    today = await group_day(session, group, day, now)
    expected = {c.student_id: c for c in today.children}
    absent_ids = [s for s in (absent or []) if s in expected]
    present_ids = [
        s for s in (present if present is not None else expected) if s in expected and s not in absent_ids
    ]
    marked = Marked(Outcome.OK)
    for student_id, is_present in [*((s, True) for s in present_ids), *((s, False) for s in absent_ids)]:
        child = expected[student_id]
        if is_present and child.absence_reason and present is None:
            continue  # "all present" skips children whose parents reported them absent
        row = await session.scalar(
            select(Attendance).where(Attendance.student_id == student_id, Attendance.day == day)
        )
        if row is None:
            row = Attendance(
                school_id=group.school_id,
                student_id=student_id,
                group_id=group.id,
                day=day,
                present=is_present,
                marked_by=people[0],
                marked_at=now,
            )
            session.add(row)
        else:
            row.present, row.marked_by, row.marked_at = is_present, people[0], now
        if not is_present and child.absence_reason is None:
            marked.unexpected_absent.append(student_id)
    await session.flush()
    await audit.record(
        session,
        "attendance.marked",
        school_id=group.school_id,
        actor_person_id=people[0],
        target_type="group",
        target_id=group.id,
        day=day.isoformat(),
        present=len(present_ids),
        absent=len(absent_ids),
    )
    return marked


@dataclass
class HandedOver:
    outcome: Outcome
    handover: Handover | None = None
    guardians: list[int] = field(default_factory=list)
    child: str = ""  # the child's name, for the messages


async def hand_over(
    session: AsyncSession,
    group: ServiceGroup,
    student_id: int,
    day: date,
    people: list[int],
    now: datetime,
    *,
    adult_id: int | None = None,
    request_id: int | None = None,
    alone: bool = False,
    code: str | None = None,
) -> HandedOver:
    """Record that a child left with an authorised adult (or alone, with consent)."""
    if not await may_act(session, people, group, day):
        await audit.record(
            session,
            "handover.refused",
            school_id=group.school_id,
            target_type="student",
            target_id=student_id,
            reason="not_on_duty",
        )
        return HandedOver(Outcome.FORBIDDEN)
    # Before the "already handed over" answer, which names the adult: only for this group's children.
    child = await rosters.expected_child(session, group, student_id, day, now)
    if child is None:
        return HandedOver(Outcome.NOT_EXPECTED)
    existing = await session.scalar(
        select(Handover).where(Handover.student_id == student_id, Handover.day == day)
    )
    if existing is not None:
        return HandedOver(Outcome.ALREADY, existing)
    kind, name, relation, verified = "", "", "", False
    if adult_id is not None:
        adult = await session.get(PickupAdult, adult_id)
        allowed = (
            adult is not None
            and adult.student_id == student_id
            and adult.removed_at is None
            and (adult.only_on is None or adult.only_on == day)
        )
        if not allowed or adult is None:
            await audit.record(
                session,
                "handover.refused",
                school_id=group.school_id,
                actor_person_id=people[0],
                target_type="student",
                target_id=student_id,
                reason="adult_not_authorised",
            )
            return HandedOver(Outcome.NOT_AUTHORISED)
        if code is not None and code != adult.code:
            return HandedOver(Outcome.WRONG_CODE)
        kind = "one_time" if adult.only_on else "listed"
        name, relation, verified = adult.name, adult.relation, code is not None
    elif request_id is not None:
        req = await session.get(HandoverRequest, request_id)
        if req is None or req.student_id != student_id or req.day != day or req.status != "allowed":
            await audit.record(
                session,
                "handover.refused",
                school_id=group.school_id,
                actor_person_id=people[0],
                target_type="student",
                target_id=student_id,
                reason="request_not_allowed",
            )
            return HandedOver(
                Outcome.NOT_AUTHORISED if req is None or req.status != "pending" else Outcome.PENDING
            )
        kind, name, relation = "allowed_once", req.adult_name, req.relation
    elif alone:
        if await pickup.alone_consent(session, student_id) is None:
            return HandedOver(Outcome.NOT_AUTHORISED)
        kind = "alone"
    else:
        return HandedOver(Outcome.NOT_AUTHORISED)
    values = {
        "school_id": group.school_id,
        "student_id": student_id,
        "group_id": group.id,
        "day": day,
        "kind": kind,
        "adult_id": adult_id,
        "request_id": request_id,
        "adult_name": name,
        "relation": relation,
        "code_verified": verified,
        "staff_person_id": people[0],
        "handed_at": now,
    }
    handover_id = await insert_new_id(session, Handover.__table__, ("student_id", "day"), values)
    if handover_id is None:
        # A colleague recorded this child's handover in the same moment: theirs stands.
        existing = await session.scalar(
            select(Handover).where(Handover.student_id == student_id, Handover.day == day)
        )
        return HandedOver(Outcome.ALREADY, existing)
    # Written in one statement and not read back: the record as written (not in the session).
    row = Handover(id=handover_id, **values)
    # Present, if nobody marked the child yet (a mark already made stands).
    await insert_new(
        session,
        Attendance.__table__,
        ("student_id", "day"),
        {
            "school_id": group.school_id,
            "student_id": student_id,
            "group_id": group.id,
            "day": day,
            "present": True,
            "marked_by": people[0],
            "marked_at": now,
        },
    )
    await audit.record(
        session,
        "handover.recorded",
        school_id=group.school_id,
        actor_person_id=people[0],
        target_type="student",
        target_id=student_id,
        handover_id=row.id,
        kind=kind,
    )
    return HandedOver(Outcome.OK, row, await guardians_of(session, student_id), child)


@dataclass
class Requested:
    outcome: Outcome
    request: HandoverRequest | None = None
    guardians: list[int] = field(default_factory=list)


async def request_unlisted(
    session: AsyncSession,
    group: ServiceGroup,
    student_id: int,
    day: date,
    people: list[int],
    name: str,
    relation: str,
    now: datetime,
) -> Requested:
    """Staff: an adult not on the list is here. The child stays; the parents are asked at once."""
    if not await may_act(session, people, group, day):
        return Requested(Outcome.FORBIDDEN)
    if not await rosters.expected(session, group, student_id, day, now):
        return Requested(Outcome.NOT_EXPECTED)  # not this group's child today (or another school's)
    if await session.scalar(
        select(Handover.id).where(Handover.student_id == student_id, Handover.day == day)
    ):
        return Requested(Outcome.ALREADY)
    req = HandoverRequest(
        school_id=group.school_id,
        student_id=student_id,
        group_id=group.id,
        day=day,
        adult_name=name.strip()[:100],
        relation=relation.strip()[:32],
        staff_person_id=people[0],
        requested_at=now,
    )
    session.add(req)
    await session.flush()
    await audit.record(
        session,
        "handover.unlisted_adult",
        school_id=group.school_id,
        actor_person_id=people[0],
        target_type="handover_request",
        target_id=req.id,
        student_id=student_id,
    )
    return Requested(Outcome.PENDING, req, await guardians_of(session, student_id))


async def decide_request(
    session: AsyncSession,
    request_id: int,
    people: list[int],
    account_id: int | None,
    allow: bool,
    now: datetime,
) -> Requested:
    """A guardian allows or refuses this one handover; the first answer counts."""
    req = await session.scalar(
        select(HandoverRequest).where(HandoverRequest.id == request_id).with_for_update()
    )
    if req is None:
        return Requested(Outcome.NOT_AUTHORISED)
    actor = await guardian_among(session, people, req.student_id)
    if actor is None:
        await audit.record(
            session,
            "handover.refused",
            school_id=req.school_id,
            actor_account_id=account_id,
            target_type="handover_request",
            target_id=req.id,
            reason="not_guardian",
        )
        return Requested(Outcome.FORBIDDEN, req)
    if req.status != "pending":
        return Requested(Outcome.ALREADY, req)
    req.status = "allowed" if allow else "refused"
    req.decided_by, req.decided_at = actor, now
    await audit.record(
        session,
        "handover.request_allowed" if allow else "handover.request_refused",
        school_id=req.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="handover_request",
        target_id=req.id,
    )
    return Requested(Outcome.OK, req, [g for g in await guardians_of(session, req.student_id) if g != actor])


async def unanswered_requests(session: AsyncSession, now: datetime) -> list[HandoverRequest]:
    """Requests pending for longer than ESCALATE_AFTER and not yet escalated: marked escalated now."""
    rows = list(
        await session.scalars(
            select(HandoverRequest)
            .where(
                HandoverRequest.status == "pending",
                HandoverRequest.escalated_at.is_(None),
                HandoverRequest.requested_at <= now - ESCALATE_AFTER,
            )
            .with_for_update()
        )
    )
    for req in rows:
        req.escalated_at = now
        await audit.record(
            session,
            "handover.request_escalated",
            school_id=req.school_id,
            target_type="handover_request",
            target_id=req.id,
        )
    return rows


def local_today(school: School, now: datetime) -> date:
    return now.astimezone(ZoneInfo(school.timezone)).date()


async def service_end(session: AsyncSession, school: School, day: date) -> datetime | None:
    """When the afternoon service ends on `day`, from the terms in force."""
    version = await session.scalar(
        select(TermsVersion)
        .where(TermsVersion.school_id == school.id)
        .order_by(TermsVersion.version.desc())
        .limit(1)
    )
    if version is None:
        return None
    end = time.fromisoformat(version.content["service_hours"]["afternoon"]["end"])
    return datetime.combine(day, end, ZoneInfo(school.timezone))


async def students_named(session: AsyncSession, ids: list[int]) -> dict[int, Student]:
    return {s.id: s for s in await session.scalars(select(Student).where(Student.id.in_(ids)))}


LATE_GRACE = timedelta(minutes=15)
LATE_REPEAT = timedelta(minutes=10)
LATE_ESCALATE_AFTER = 3  # alerts to parents and staff before the admin is told
SUMMARY_AFTER = timedelta(hours=1)  # after the service ends


@dataclass
class LateChild:
    group: ServiceGroup
    student_id: int
    name: str
    alert: LateAlert
    escalate: bool


async def groups_running(session: AsyncSession, school: School, day: date) -> list[ServiceGroup]:
    weekday = WEEKDAY_ORDER[day.weekday()]
    return [
        g
        for g in await session.scalars(
            select(ServiceGroup).where(ServiceGroup.school_id == school.id, ServiceGroup.active.is_(True))
        )
        if weekday in g.weekdays
    ]


async def late_children(
    session: AsyncSession, now: datetime, grace: timedelta = LATE_GRACE, repeat: timedelta = LATE_REPEAT
) -> list[LateChild]:
    """Children present (or expected and not marked) without a handover once the service ended plus
    the grace: one alert each `repeat`, escalated to the admin after LATE_ESCALATE_AFTER alerts."""
    found = []
    for school in await session.scalars(select(School)):
        day = local_today(school, now)
        end = await service_end(session, school, day)
        if end is None or now < end + grace:
            continue
        for group in await groups_running(session, school, day):
            state = await group_day(session, group, day, now)
            for child in state.children:
                if (
                    child.handover is not None
                    or child.present is False
                    or (child.present is None and child.absence_reason)
                ):
                    continue
                alert = await session.scalar(
                    select(LateAlert).where(LateAlert.student_id == child.student_id, LateAlert.day == day)
                )
                if alert is None:
                    alert = LateAlert(school_id=school.id, student_id=child.student_id, day=day, alerts=0)
                    session.add(alert)
                elif alert.last_alert_at is not None and now < alert.last_alert_at + repeat:
                    continue
                alert.alerts += 1
                alert.last_alert_at = now
                escalate = alert.alerts >= LATE_ESCALATE_AFTER and alert.escalated_at is None
                if escalate:
                    alert.escalated_at = now
                await session.flush()
                found.append(LateChild(group, child.student_id, child.name, alert, escalate))
    return found


async def staff_of(session: AsyncSession, group: ServiceGroup, day: date) -> list[int]:
    ids = []
    for person_id in await session.scalars(select(GroupDuty.person_id).where(GroupDuty.group_id == group.id)):
        if await vetting.valid_record(session, person_id, day):
            ids.append(person_id)
    return ids


@dataclass
class Summary:
    group: GroupDay
    present: int
    absent: int
    handed_over: int
    waiting: list[str]


async def due_summaries(
    session: AsyncSession, now: datetime, after: timedelta = SUMMARY_AFTER
) -> list[Summary]:
    """End-of-day summaries not yet sent, for groups whose service ended `after` ago. A child without
    a handover record is listed by name, never dropped."""
    found = []
    for school in await session.scalars(select(School)):
        day = local_today(school, now)
        end = await service_end(session, school, day)
        if end is None or now < end + after:
            continue
        for group in await groups_running(session, school, day):
            sent = await session.scalar(
                select(DaySummary.id).where(DaySummary.group_id == group.id, DaySummary.day == day)
            )
            if sent is not None:
                continue
            state = await group_day(session, group, day, now)
            session.add(DaySummary(school_id=school.id, group_id=group.id, day=day, sent_at=now))
            await session.flush()
            absent = [
                c for c in state.children if c.present is False or (c.present is None and c.absence_reason)
            ]
            present = [c for c in state.children if c.present or c.handover]
            # Everyone not known to be absent needs a handover record: present, or never marked.
            waiting = [c.name for c in state.children if c.handover is None and c not in absent]
            handed = len([c for c in state.children if c.handover])
            found.append(Summary(state, len(present), len(absent), handed, waiting))
    return found
