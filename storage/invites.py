"""One-time invite codes that bind a chat account to a roster person."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.clock import utcnow
from storage.models import (
    AccountBinding,
    Guardianship,
    InviteCode,
    InviteFailure,
    Person,
    PersonRole,
    PlatformAccount,
    Role,
    School,
    SchoolClass,
    Student,
)

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are typed from paper too
CODE_LENGTH = 12
MAX_FAILURES_PER_HOUR = 5


class InviteError(ValueError):
    """`key` names the problem for messages (`admin.<key>`); `params` fill its placeholders."""

    def __init__(self, key: str, **params: object) -> None:
        self.key, self.params = key, params
        super().__init__(f"{key} {params}")


@dataclass(frozen=True)
class IssuedInvite:
    code: str
    role: str
    person_name: str
    person_no: str
    expires_at: datetime
    student_no: str | None = None
    student_name: str | None = None
    class_name: str | None = None
    relation: str | None = None


class Outcome(enum.StrEnum):
    VALID = "valid"  # `check` only: the code would bind
    BOUND = "bound"
    ALREADY_BOUND = "already_bound"
    INVALID = "invalid"
    EXPIRED = "expired"
    USED = "used"
    OTHER_SCHOOL = "other_school"
    RATE_LIMITED = "rate_limited"


@dataclass
class Redemption:
    outcome: Outcome
    role: str | None = None
    person: Person | None = None
    student: Student | None = None
    relation: str | None = None
    notify_person_ids: list[int] = field(default_factory=list)


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str:
    return raw.strip().upper().replace("-", "").replace(" ", "")[:64]


async def _issue(
    session: AsyncSession,
    school: School,
    role: str,
    person: Person,
    ttl: timedelta,
    student: Student | None = None,
) -> InviteCode:
    """A fresh code; an unused older code for the same person and child stops working."""
    now = utcnow()
    same_child = InviteCode.student_id == student.id if student else InviteCode.student_id.is_(None)
    await session.execute(
        update(InviteCode)
        .where(
            InviteCode.person_id == person.id,
            same_child,
            InviteCode.role == role,
            InviteCode.used_at.is_(None),
            InviteCode.expires_at > now,
        )
        .values(expires_at=now)
    )
    invite = InviteCode(
        school_id=school.id,
        code=new_code(),
        role=role,
        person_id=person.id,
        student_id=student.id if student else None,
        expires_at=now + ttl,
    )
    session.add(invite)
    await session.flush()
    return invite


async def create_parent_invites(
    session: AsyncSession,
    school: School,
    ttl: timedelta,
    *,
    student_no: str | None = None,
    class_name: str | None = None,
) -> list[IssuedInvite]:
    """One code per guardian of the student, or of every student of the class."""
    query = (
        select(Student, SchoolClass, Guardianship, Person)
        .join(SchoolClass, SchoolClass.id == Student.class_id)
        .join(Guardianship, Guardianship.student_id == Student.id)
        .join(Person, Person.id == Guardianship.person_id)
        .where(Student.school_id == school.id, Student.active.is_(True))
        .order_by(Student.student_no, Guardianship.position)
    )
    if student_no:
        query = query.where(Student.student_no == student_no)
    elif class_name:
        query = query.where(SchoolClass.name == class_name)
    else:
        raise InviteError("need_student_or_class")
    rows = (await session.execute(query)).all()
    if not rows:
        if student_no:
            raise InviteError("no_student", student=student_no, school=school.code)
        raise InviteError("no_class", class_name=class_name, school=school.code)
    issued = []
    for student, cls, link, person in rows:
        invite = await _issue(session, school, Role.PARENT.value, person, ttl, student)
        issued.append(
            IssuedInvite(
                invite.code,
                Role.PARENT.value,
                person.name,
                person.person_no,
                invite.expires_at,
                student.student_no,
                student.name,
                cls.name,
                link.relation,
            )
        )
    return issued


async def create_person_invite(
    session: AsyncSession, school: School, role: str, person_no: str, ttl: timedelta
) -> IssuedInvite:
    person = await session.scalar(
        select(Person).where(Person.school_id == school.id, Person.person_no == person_no)
    )
    if person is None:
        raise InviteError("no_person", person=person_no, school=school.code)
    has_role = await session.scalar(
        select(PersonRole.id).where(PersonRole.person_id == person.id, PersonRole.role == role)
    )
    if has_role is None:
        raise InviteError("person_lacks_role", person=person_no, role=role)
    invite = await _issue(session, school, role, person, ttl)
    return IssuedInvite(invite.code, role, person.name, person.person_no, invite.expires_at)


async def recent_failures(session: AsyncSession, account_id: int, now: datetime) -> int:
    return (
        await session.scalar(
            select(func.count(InviteFailure.id)).where(
                InviteFailure.account_id == account_id,
                InviteFailure.at > now - timedelta(hours=1),
            )
        )
        or 0
    )


def looks_like_code(raw: str) -> bool:
    """Whether a text could be one of our codes: anything else can never match, whatever it is."""
    code = normalise_code(raw)
    return len(code) == CODE_LENGTH and all(ch in ALPHABET for ch in code)


async def failures_since(session: AsyncSession, platform: str, external_id: str, since: datetime) -> int:
    """Wrong codes this chat account sent from `since` on (the web chat counts them per address)."""
    return (
        await session.scalar(
            select(func.count(InviteFailure.id))
            .join(PlatformAccount, PlatformAccount.id == InviteFailure.account_id)
            .where(
                PlatformAccount.platform == platform,
                PlatformAccount.external_id == external_id,
                InviteFailure.at >= since,
            )
        )
        or 0
    )


async def _usable(
    session: AsyncSession, account: PlatformAccount, raw_code: str, now: datetime
) -> InviteCode | Redemption:
    """The invite this account may redeem now, or why not. Wrong codes count towards the limit."""
    if await recent_failures(session, account.id, now) >= MAX_FAILURES_PER_HOUR:
        return Redemption(Outcome.RATE_LIMITED)
    code = normalise_code(raw_code)
    invite = await session.scalar(select(InviteCode).where(InviteCode.code == code).with_for_update())

    async def fail(outcome: Outcome) -> Redemption:
        session.add(InviteFailure(account_id=account.id, at=now))
        await audit.record(
            session,
            "invite.refused",
            school_id=invite.school_id if invite else None,
            actor_account_id=account.id,
            target_type="invite" if invite else None,
            target_id=invite.id if invite else None,
            reason=outcome.value,
        )
        return Redemption(outcome)

    if invite is None:
        return await fail(Outcome.INVALID)
    if invite.used_at is not None:
        if invite.used_by_account_id == account.id:
            return await _describe(session, invite, Outcome.ALREADY_BOUND)
        return await fail(Outcome.USED)
    if invite.expires_at <= now:
        return await fail(Outcome.EXPIRED)
    other_school = await session.scalar(
        select(AccountBinding.id).where(
            AccountBinding.account_id == account.id, AccountBinding.school_id != invite.school_id
        )
    )
    if other_school is not None:
        return Redemption(Outcome.OTHER_SCHOOL)
    return invite


async def check(session: AsyncSession, account: PlatformAccount, raw_code: str) -> Redemption:
    """What redeeming the code would do, without using it: VALID (with whom it binds) or the refusal.

    Used before the privacy notice is shown; the same limits apply, and `redeem` checks again.
    """
    found = await _usable(session, account, raw_code, utcnow())
    if isinstance(found, Redemption):
        return found
    return await _describe(session, found, Outcome.VALID)


async def redeem(session: AsyncSession, account: PlatformAccount, raw_code: str) -> Redemption:
    """Bind the account to the invite's person, or say why not. Wrong codes count towards a limit."""
    now = utcnow()
    found = await _usable(session, account, raw_code, now)
    if isinstance(found, Redemption):
        return found
    invite = found
    invite.used_at = now
    invite.used_by_account_id = account.id
    already = await session.scalar(
        select(AccountBinding.id).where(
            AccountBinding.account_id == account.id, AccountBinding.person_id == invite.person_id
        )
    )
    if already is None:
        session.add(
            AccountBinding(school_id=invite.school_id, account_id=account.id, person_id=invite.person_id)
        )
    await audit.record(
        session,
        "invite.bound",
        school_id=invite.school_id,
        actor_account_id=account.id,
        actor_person_id=invite.person_id,
        target_type="invite",
        target_id=invite.id,
        role=invite.role,
    )
    await session.flush()
    return await _describe(session, invite, Outcome.BOUND)


async def _describe(session: AsyncSession, invite: InviteCode, outcome: Outcome) -> Redemption:
    person = await session.get(Person, invite.person_id)
    result = Redemption(outcome, role=invite.role, person=person)
    if invite.student_id is not None:
        result.student = await session.get(Student, invite.student_id)
        result.relation = await session.scalar(
            select(Guardianship.relation).where(
                Guardianship.student_id == invite.student_id,
                Guardianship.person_id == invite.person_id,
            )
        )
        if outcome is Outcome.BOUND and result.student is not None:
            head = await session.scalar(
                select(SchoolClass.head_teacher_id).where(SchoolClass.id == result.student.class_id)
            )
            if head is not None:
                result.notify_person_ids.append(head)
    return result
