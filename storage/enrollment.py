"""Enrollment (家长自愿申请、班级初审、学校核准、统筹安排) as plain functions; the caller commits.

Every action re-checks, from the database, that the person may take it and that the application
is still in the state the button was made for. Refusals do not raise: they return an Outcome and
leave an audit row, so the attempt is on record when the caller commits.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, placement
from storage.fees import Waiver
from storage.models import (
    ACTIVE_APPLICATION,
    Application,
    ApplicationStatus,
    Guardianship,
    PersonRole,
    PlacementProposal,
    Role,
    SchoolClass,
    ServiceGroup,
    Student,
    TermsVersion,
)
from storage.terms import PRIORITY_GROUPS

S = ApplicationStatus
OFFER_HOURS = 48
MAX_NOTE = 300
MAX_REASON = 500


class Outcome(enum.StrEnum):
    OK = "ok"
    FORBIDDEN = "forbidden"  # this person may not do this (forged, forwarded, other class)
    STALE = "stale"  # already decided, withdrawn or replayed
    NOT_FOUND = "not_found"
    ALREADY_APPLIED = "already_applied"
    INVALID = "invalid"  # options the terms do not offer
    FULL = "full"  # no seat left
    REASON_REQUIRED = "reason_required"


@dataclass(frozen=True)
class Options:
    weekdays: tuple[str, ...]
    noon_care: bool = False
    lunch: bool = False
    activities: tuple[str, ...] = ()
    priority_claimed: tuple[str, ...] = ()
    waiver_requested: bool = False
    waiver_note: str = ""


@dataclass
class Result:
    outcome: Outcome
    application: Application | None = None
    # People to tell, by what happened: the child's guardians, the reviewer, the school's admins.
    tell_guardians: list[int] = field(default_factory=list)
    tell_reviewers: list[int] = field(default_factory=list)
    offers: list[Application] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


def term_of(terms: TermsVersion) -> str:
    """The term an application belongs to: the terms' school year, else their version."""
    return str(terms.content.get("school_year") or f"v{terms.version}")


def check_options(terms: TermsVersion, options: Options) -> list[str]:
    """What in `options` the published terms do not offer (empty when all is offered)."""
    content: dict[str, Any] = terms.content
    hours = content["service_hours"]
    offered_days = set(hours["weekdays"])
    offered_activities = {a["type"] for a in content["activities"]}
    problems = []
    if not options.weekdays or not set(options.weekdays) <= offered_days:
        problems.append("weekdays")
    if options.noon_care and not hours.get("noon_care"):
        problems.append("noon_care")
    if options.lunch and not hours.get("lunch_offered"):
        problems.append("lunch")
    if not set(options.activities) <= offered_activities:
        problems.append("activities")
    if not set(options.priority_claimed) <= set(PRIORITY_GROUPS):
        problems.append("priority")
    if len(options.waiver_note) > MAX_NOTE:
        problems.append("waiver_note")
    return problems


async def guardians_of(session: AsyncSession, student_id: int) -> list[int]:
    return list(
        await session.scalars(
            select(Guardianship.person_id)
            .where(Guardianship.student_id == student_id)
            .order_by(Guardianship.position)
        )
    )


async def admins_of(session: AsyncSession, school_id: int) -> list[int]:
    return list(
        await session.scalars(
            select(PersonRole.person_id)
            .where(PersonRole.school_id == school_id, PersonRole.role == Role.ADMIN.value)
            .order_by(PersonRole.person_id)
        )
    )


async def _head_teacher(session: AsyncSession, student_id: int) -> int | None:
    return await session.scalar(
        select(SchoolClass.head_teacher_id)
        .join(Student, Student.class_id == SchoolClass.id)
        .where(Student.id == student_id)
    )


async def is_admin(session: AsyncSession, people: Iterable[int], school_id: int) -> bool:
    found = await session.scalar(
        select(PersonRole.id).where(
            PersonRole.person_id.in_(list(people)),
            PersonRole.school_id == school_id,
            PersonRole.role == Role.ADMIN.value,
        )
    )
    return found is not None


async def guardian_among(session: AsyncSession, people: Iterable[int], student_id: int) -> int | None:
    return await session.scalar(
        select(Guardianship.person_id).where(
            Guardianship.student_id == student_id, Guardianship.person_id.in_(list(people))
        )
    )


async def _lock(session: AsyncSession, application_id: int) -> Application | None:
    return await session.scalar(select(Application).where(Application.id == application_id).with_for_update())


async def record_refusal(
    session: AsyncSession,
    outcome: Outcome,
    action: str,
    account_id: int | None,
    app: Application | None,
    application_id: int | None = None,
    actor: int | None = None,
) -> Result:
    """Put a refused attempt on record (forged, forwarded, replayed or not allowed)."""
    await audit.record(
        session,
        "application.refused",
        school_id=app.school_id if app else None,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="application",
        target_id=app.id if app else application_id,
        attempted=action,
        outcome=outcome.value,
    )
    return Result(outcome, app)


# -- parent ------------------------------------------------------------------------------------


async def active_application(session: AsyncSession, student_id: int, term: str) -> Application | None:
    return await session.scalar(
        select(Application).where(
            Application.student_id == student_id,
            Application.term == term,
            Application.status.in_(ACTIVE_APPLICATION),
        )
    )


async def submit(
    session: AsyncSession,
    *,
    people: list[int],
    account_id: int | None,
    student_id: int,
    terms: TermsVersion,
    options: Options,
    now: datetime,
) -> Result:
    """A guardian applies for one child under the terms shown; one active application per term."""
    student = await session.scalar(
        select(Student).where(Student.id == student_id).with_for_update(of=Student)
    )
    guardian = await guardian_among(session, people, student_id) if student else None
    if student is None or guardian is None or student.school_id != terms.school_id:
        return await record_refusal(session, Outcome.FORBIDDEN, "submit", account_id, None, None)
    if check_options(terms, options):
        return Result(Outcome.INVALID)
    term = term_of(terms)
    if await active_application(session, student_id, term) is not None:
        return Result(Outcome.ALREADY_APPLIED, await active_application(session, student_id, term))
    app = Application(
        school_id=student.school_id,
        student_id=student_id,
        applicant_person_id=guardian,
        terms_version_id=terms.id,
        term=term,
        status=S.SUBMITTED.value,
        weekdays=list(options.weekdays),
        noon_care=options.noon_care,
        lunch=options.lunch,
        activities=list(options.activities),
        priority_claimed=list(options.priority_claimed),
        waiver_requested=options.waiver_requested,
        waiver_note=options.waiver_note[:MAX_NOTE],
        waiver=(Waiver.PENDING if options.waiver_requested else Waiver.NONE).value,
        applied_at=now,
    )
    session.add(app)
    await session.flush()
    await audit.record(
        session,
        "application.submitted",
        school_id=app.school_id,
        actor_person_id=guardian,
        actor_account_id=account_id,
        target_type="application",
        target_id=app.id,
        terms_version=terms.version,
    )
    head = await _head_teacher(session, student_id)
    reviewers = [head] if head else await admins_of(session, app.school_id)
    return Result(Outcome.OK, app, tell_reviewers=reviewers)


async def withdraw(
    session: AsyncSession, application_id: int, people: list[int], account_id: int | None, now: datetime
) -> Result:
    """Withdrawal at any time (自愿); the place is free at once and offered to the next child."""
    app = await _lock(session, application_id)
    if app is None:
        return await record_refusal(session, Outcome.NOT_FOUND, "withdraw", account_id, None, application_id)
    actor = await guardian_among(session, people, app.student_id)
    if actor is None:
        return await record_refusal(session, Outcome.FORBIDDEN, "withdraw", account_id, app)
    if app.status not in ACTIVE_APPLICATION:
        return Result(Outcome.STALE, app)
    had_place = app.status in (S.PLACED.value, S.OFFERED.value)
    app.status = S.WITHDRAWN.value
    app.closed_at = now
    await audit.record(
        session,
        "application.withdrawn",
        school_id=app.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="application",
        target_id=app.id,
    )
    result = Result(Outcome.OK, app, tell_guardians=await guardians_of(session, app.student_id))
    if had_place:
        await session.flush()
        result.offers = await offer_next(session, app.school_id, app.term, now)
    return result


async def answer_offer(
    session: AsyncSession,
    application_id: int,
    people: list[int],
    account_id: int | None,
    accept: bool,
    now: datetime,
) -> Result:
    app = await _lock(session, application_id)
    if app is None:
        return await record_refusal(session, Outcome.NOT_FOUND, "offer", account_id, None, application_id)
    actor = await guardian_among(session, people, app.student_id)
    if actor is None:
        return await record_refusal(session, Outcome.FORBIDDEN, "offer", account_id, app)
    if app.status != S.OFFERED.value or (app.offer_expires_at and app.offer_expires_at <= now):
        return Result(Outcome.STALE, app)
    result = Result(Outcome.OK, app, tell_guardians=await guardians_of(session, app.student_id))
    if accept:
        app.status, app.placed_at, app.sign_requested_at = S.PLACED.value, now, now
    else:
        app.status, app.closed_at, app.group_id = S.WITHDRAWN.value, now, None
    app.offer_expires_at = None
    await audit.record(
        session,
        "application.offer_accepted" if accept else "application.offer_declined",
        school_id=app.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="application",
        target_id=app.id,
    )
    if not accept:
        await session.flush()
        result.offers = await offer_next(session, app.school_id, app.term, now)
    return result


# -- class teacher and school ------------------------------------------------------------------


async def may_review(session: AsyncSession, people: list[int], app: Application) -> bool:
    """The head teacher of the child's class, or an admin of the child's school."""
    head = await _head_teacher(session, app.student_id)
    return (head is not None and head in people) or await is_admin(session, people, app.school_id)


async def class_review(
    session: AsyncSession,
    application_id: int,
    people: list[int],
    account_id: int | None,
    *,
    approve: bool,
    now: datetime,
    reason: str = "",
    priority_confirmed: list[str] | None = None,
    waiver_ok: bool | None = None,
) -> Result:
    """班级初审: approve (confirming or correcting the claims) or reject with a reason."""
    app = await _lock(session, application_id)
    if app is None:
        return await record_refusal(
            session, Outcome.NOT_FOUND, "class_review", account_id, None, application_id
        )
    if not await may_review(session, people, app):
        return await record_refusal(session, Outcome.FORBIDDEN, "class_review", account_id, app)
    actor = people[0]
    if app.status != S.SUBMITTED.value:
        return await record_refusal(session, Outcome.STALE, "class_review", account_id, app, actor=actor)
    if not approve and not reason.strip():
        return Result(Outcome.REASON_REQUIRED, app)
    app.class_reviewed_by, app.class_reviewed_at = actor, now
    if approve:
        confirmed = app.priority_claimed if priority_confirmed is None else priority_confirmed
        app.priority_confirmed = [p for p in confirmed if p in PRIORITY_GROUPS]
        if app.waiver_requested and waiver_ok is False:
            app.waiver = Waiver.REFUSED.value
        app.status = S.CLASS_APPROVED.value
    else:
        app.status, app.reject_reason, app.closed_at = S.REJECTED.value, reason.strip()[:MAX_REASON], now
    await audit.record(
        session,
        "application.class_approved" if approve else "application.class_rejected",
        school_id=app.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="application",
        target_id=app.id,
        # How many priority groups, not which: the categories (disability, ...) stay on the application.
        priority=len(app.priority_confirmed or []),
        waiver=app.waiver,
    )
    return Result(
        Outcome.OK,
        app,
        tell_guardians=await guardians_of(session, app.student_id),
        tell_reviewers=await admins_of(session, app.school_id) if approve else [],
    )


async def school_decide(
    session: AsyncSession,
    application_id: int,
    people: list[int],
    account_id: int | None,
    *,
    approve: bool,
    now: datetime,
    reason: str = "",
    waiver_granted: bool | None = None,
) -> Result:
    """学校核准: admins approve or reject; approving makes the waiver decision final."""
    app = await _lock(session, application_id)
    if app is None:
        return await record_refusal(
            session, Outcome.NOT_FOUND, "school_decide", account_id, None, application_id
        )
    if not await is_admin(session, people, app.school_id):
        return await record_refusal(session, Outcome.FORBIDDEN, "school_decide", account_id, app)
    actor = people[0]
    if app.status != S.CLASS_APPROVED.value:
        return await record_refusal(session, Outcome.STALE, "school_decide", account_id, app, actor=actor)
    if not approve and not reason.strip():
        return Result(Outcome.REASON_REQUIRED, app)
    app.school_decided_by, app.school_decided_at = actor, now
    if approve:
        if app.waiver == Waiver.PENDING.value:
            app.waiver = (Waiver.REFUSED if waiver_granted is False else Waiver.GRANTED).value
        elif app.waiver == Waiver.REFUSED.value and waiver_granted:
            app.waiver = Waiver.GRANTED.value
        app.status = S.APPROVED.value
    else:
        app.status, app.reject_reason, app.closed_at = S.REJECTED.value, reason.strip()[:MAX_REASON], now
    await audit.record(
        session,
        "application.approved" if approve else "application.rejected",
        school_id=app.school_id,
        actor_person_id=actor,
        actor_account_id=account_id,
        target_type="application",
        target_id=app.id,
        waiver=app.waiver,
    )
    return Result(Outcome.OK, app, tell_guardians=await guardians_of(session, app.student_id))


async def pending_for(session: AsyncSession, people: list[int], school_id: int) -> list[Application]:
    """What awaits these people: class reviews for head teachers, everything open for admins."""
    if await is_admin(session, people, school_id):
        states = [S.SUBMITTED.value, S.CLASS_APPROVED.value]
        query = select(Application).where(Application.school_id == school_id)
    else:
        states = [S.SUBMITTED.value]
        query = (
            select(Application)
            .join(Student, Student.id == Application.student_id)
            .join(SchoolClass, SchoolClass.id == Student.class_id)
            .where(SchoolClass.head_teacher_id.in_(people))
        )
    return list(
        await session.scalars(query.where(Application.status.in_(states)).order_by(Application.applied_at))
    )


# -- placement ---------------------------------------------------------------------------------


def _candidate(app: Application) -> placement.Candidate:
    return placement.Candidate(
        application_id=app.id,
        priority=bool(app.priority_confirmed),
        applied_at=app.applied_at,
        weekdays=frozenset(app.weekdays),
        preferred_activities=tuple(app.activities),
    )


async def loads(session: AsyncSession, school_id: int, term: str) -> dict[int, dict[str, int]]:
    """Seats taken per group and weekday: placed children and open offers."""
    rows = await session.execute(
        select(Application.group_id, Application.weekdays).where(
            Application.school_id == school_id,
            Application.term == term,
            Application.status.in_([S.PLACED.value, S.OFFERED.value]),
            Application.group_id.is_not(None),
        )
    )
    loads: dict[int, dict[str, int]] = {}
    for group_id, weekdays in rows:
        for day in weekdays:
            loads.setdefault(group_id, {})[day] = loads.setdefault(group_id, {}).get(day, 0) + 1
    return loads


async def _seats(
    session: AsyncSession, school_id: int, term: str, lock: bool = False
) -> list[placement.Seats]:
    query = (
        select(ServiceGroup)
        .where(ServiceGroup.school_id == school_id, ServiceGroup.term == term, ServiceGroup.active.is_(True))
        .order_by(ServiceGroup.id)
    )
    if lock:
        query = query.with_for_update()
    found = list(await session.scalars(query))
    taken = await loads(session, school_id, term)
    return [
        placement.Seats(g.id, g.activity_type, frozenset(g.weekdays), g.capacity, taken.get(g.id, {}))
        for g in found
    ]


async def _queue(session: AsyncSession, school_id: int, term: str, states: list[str]) -> list[Application]:
    return list(
        await session.scalars(
            select(Application).where(
                Application.school_id == school_id,
                Application.term == term,
                Application.status.in_(states),
            )
        )
    )


async def propose_placement(
    session: AsyncSession, school_id: int, term: str, people: list[int], now: datetime
) -> PlacementProposal | None:
    """A proposal for every approved or waiting child; nothing changes until an admin confirms.

    `people` empty means the command line (the school's own server), which needs no chat role.
    """
    if people and not await is_admin(session, people, school_id):
        await record_refusal(session, Outcome.FORBIDDEN, "propose", None, None)
        return None
    apps = await _queue(session, school_id, term, [S.APPROVED.value, S.WAITING.value])
    proposal = placement.propose([_candidate(a) for a in apps], await _seats(session, school_id, term))
    row = PlacementProposal(
        school_id=school_id,
        term=term,
        created_by=people[0] if people else None,
        created_at=now,
        placements=[list(p) for p in proposal.placements],
        waiting=list(proposal.waiting),
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        "placement.proposed",
        school_id=school_id,
        actor_person_id=people[0] if people else None,
        target_type="proposal",
        target_id=row.id,
    )
    return row


@dataclass
class Confirmed:
    outcome: Outcome
    placed: list[Application] = field(default_factory=list)
    waiting: list[Application] = field(default_factory=list)


async def confirm_proposal(
    session: AsyncSession, proposal_id: int, people: list[int], now: datetime
) -> Confirmed:
    """Apply a proposal, re-checking every seat under lock: a seat taken meanwhile means waiting."""
    proposal = await session.scalar(
        select(PlacementProposal).where(PlacementProposal.id == proposal_id).with_for_update()
    )
    if proposal is None:
        return Confirmed(Outcome.NOT_FOUND)
    if people and not await is_admin(session, people, proposal.school_id):
        await record_refusal(session, Outcome.FORBIDDEN, "confirm", None, None, proposal_id)
        return Confirmed(Outcome.FORBIDDEN)
    if proposal.status != "proposed":
        return Confirmed(Outcome.STALE)
    seats = {s.group_id: s for s in await _seats(session, proposal.school_id, proposal.term, lock=True)}
    load = {gid: dict(s.taken) for gid, s in seats.items()}
    result = Confirmed(Outcome.OK)
    placed_ids = set()
    for app_id, group_id in proposal.placements:
        app = await _lock(session, app_id)
        seat = seats.get(group_id)
        if app is None or app.status not in (S.APPROVED.value, S.WAITING.value):
            continue
        if seat is not None and placement.fits(_candidate(app), seat, load[group_id]):
            for day in app.weekdays:
                load[group_id][day] = load[group_id].get(day, 0) + 1
            app.status, app.group_id, app.placed_at = S.PLACED.value, group_id, now
            app.sign_requested_at = now
            result.placed.append(app)
            placed_ids.add(app.id)
    for app in await _queue(session, proposal.school_id, proposal.term, [S.APPROVED.value, S.WAITING.value]):
        if app.id not in placed_ids:
            app.status = S.WAITING.value
            result.waiting.append(app)
    result.waiting.sort(key=lambda a: placement.order_key(_candidate(a)))
    proposal.status = "confirmed"
    await audit.record(
        session,
        "placement.confirmed",
        school_id=proposal.school_id,
        actor_person_id=people[0] if people else None,
        target_type="proposal",
        target_id=proposal.id,
        placed=len(result.placed),
        waiting=len(result.waiting),
    )
    return result


async def place(
    session: AsyncSession, application_id: int, group_id: int, people: list[int], now: datetime
) -> Result:
    """Place one child by hand; the group's row is locked so two admins cannot fill one seat twice."""
    app = await _lock(session, application_id)
    if app is None:
        return Result(Outcome.NOT_FOUND)
    if not await is_admin(session, people, app.school_id):
        return await record_refusal(session, Outcome.FORBIDDEN, "place", None, app)
    group = await session.scalar(
        select(ServiceGroup)
        .where(ServiceGroup.id == group_id, ServiceGroup.school_id == app.school_id)
        .with_for_update()
    )
    if group is None:
        return Result(Outcome.NOT_FOUND, app)
    if app.status not in (S.APPROVED.value, S.WAITING.value):
        return Result(Outcome.STALE, app)
    load = (await loads(session, app.school_id, app.term)).get(group.id, {})
    seat = placement.Seats(group.id, group.activity_type, frozenset(group.weekdays), group.capacity, load)
    if not placement.fits(_candidate(app), seat, load):
        return Result(Outcome.FULL, app)
    app.status, app.group_id, app.placed_at = S.PLACED.value, group.id, now
    app.sign_requested_at = now
    await audit.record(
        session,
        "application.placed",
        school_id=app.school_id,
        actor_person_id=people[0],
        target_type="application",
        target_id=app.id,
        group_id=group.id,
    )
    return Result(Outcome.OK, app, tell_guardians=await guardians_of(session, app.student_id))


async def offer_next(
    session: AsyncSession, school_id: int, term: str, now: datetime, hours: int = OFFER_HOURS
) -> list[Application]:
    """Offer freed seats to waiting children in waiting-list order; each parent accepts or declines."""
    waiting = await _queue(session, school_id, term, [S.WAITING.value])
    if not waiting:
        return []
    proposal = placement.propose([_candidate(a) for a in waiting], await _seats(session, school_id, term))
    by_id = {a.id: a for a in waiting}
    offered = []
    for app_id, group_id in proposal.placements:
        app = by_id[app_id]
        app.status, app.group_id = S.OFFERED.value, group_id
        app.offer_expires_at = now + timedelta(hours=hours)
        offered.append(app)
        await audit.record(
            session,
            "application.offered",
            school_id=school_id,
            target_type="application",
            target_id=app.id,
            group_id=group_id,
        )
    return offered


async def expire_offers(session: AsyncSession, now: datetime) -> list[Application]:
    """Offers not answered in time lapse (the child leaves the list; the parent may apply again)."""
    lapsed = list(
        await session.scalars(
            select(Application)
            .where(Application.status == S.OFFERED.value, Application.offer_expires_at <= now)
            .with_for_update()
        )
    )
    for app in lapsed:
        app.status, app.closed_at, app.group_id, app.offer_expires_at = S.WITHDRAWN.value, now, None, None
        await audit.record(
            session,
            "application.offer_lapsed",
            school_id=app.school_id,
            target_type="application",
            target_id=app.id,
        )
    return lapsed


async def waiting_position(session: AsyncSession, app: Application) -> int | None:
    if app.status != S.WAITING.value:
        return None
    queue = sorted(
        (_candidate(a) for a in await _queue(session, app.school_id, app.term, [S.WAITING.value])),
        key=placement.order_key,
    )
    return next(i for i, c in enumerate(queue, start=1) if c.application_id == app.id)


async def applications_of(session: AsyncSession, people: list[int]) -> list[Application]:
    """Applications for the children these people are guardians of, newest first."""
    children = select(Guardianship.student_id).where(Guardianship.person_id.in_(people))
    return list(
        await session.scalars(
            select(Application)
            .where(Application.student_id.in_(children))
            .order_by(Application.applied_at.desc(), Application.id.desc())
        )
    )
