"""A parent's data: everything stored about them and their children (/mydata), and erasing it on
request once an admin agrees (/delete_me). See docs/privacy.md.

The export walks a registry (`REGISTRY`): for every table that refers to a person, a platform
account or a student, which columns pick the parent's rows and which columns are withheld
(secrets). A test checks the registry against the schema, so a new table that refers to a person
fails until it is covered here or excluded in `EXCLUDED` with a reason.

Who the export is about: the parent people the account is bound to (people with the parent role;
a teacher who is also a parent exports only the parent side: staff records are the school's
employment records), every account bound to them, and their children (guardianships).
"""

from __future__ import annotations

import enum
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Table, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from storage import audit, enrollment
from storage.accounts import accounts_of_person
from storage.enrollment import admins_of, is_admin
from storage.models import (
    ACTIVE_APPLICATION,
    Absence,
    AccountBinding,
    Agreement,
    Application,
    Base,
    ConversationState,
    DashboardLink,
    DashboardSession,
    ErasureRequest,
    ErasureStatus,
    Feedback,
    FeedbackSetting,
    GoHomeAloneConsent,
    Guardianship,
    HandoverRequest,
    InviteCode,
    InviteFailure,
    LateAlert,
    NoticeDelivery,
    NoticePreference,
    Outbox,
    Person,
    PersonRole,
    PickupAdult,
    PlatformAccount,
    PrivacyConsent,
    Role,
    Student,
    SurveyInvitation,
    SurveyResponse,
)

Subject = Literal["person", "account", "student"]
SUBJECT_TABLES: dict[str, Subject] = {"person": "person", "platform_account": "account", "student": "student"}
FORMAT = "afterschool-mydata/1"
ERASED_NAME = "—"  # a neutral mark, the same in every language, where an erased name was


@dataclass(frozen=True)
class Cover:
    """How one table's rows about the parent are found, and what of them is never shown."""

    # Column -> the ids it is matched against (the parent people, their accounts, their children).
    columns: dict[str, Subject] = field(default_factory=dict)
    # Rows reached through another exported table: (my column, that table, its column).
    via: tuple[tuple[str, str, str], ...] = ()
    # Secrets and keys: never exported (a hash of a sign-in secret, an invite code's value).
    hidden: frozenset[str] = frozenset()


# Every table that refers to a person, an account or a student, in the order the export lists them.
REGISTRY: dict[str, Cover] = {
    "person": Cover({"id": "person"}),
    "person_role": Cover({"person_id": "person"}),
    "platform_account": Cover({"id": "account"}),
    "account_binding": Cover({"account_id": "account", "person_id": "person"}),
    # The code itself is a secret even when used: only whether and when it was used is shown.
    "invite_code": Cover(
        {"person_id": "person", "student_id": "student", "used_by_account_id": "account"},
        hidden=frozenset({"code"}),
    ),
    "invite_failure": Cover({"account_id": "account"}),
    "privacy_consent": Cover({"person_id": "person", "account_id": "account"}),
    "student": Cover({"id": "student"}),
    "guardianship": Cover({"student_id": "student", "person_id": "person"}),
    # The children's classes, and a class the person heads (never for a parent-only person).
    "school_class": Cover({"head_teacher_id": "person"}, via=(("id", "student", "class_id"),)),
    "application": Cover(
        {
            "student_id": "student",
            "applicant_person_id": "person",
            "class_reviewed_by": "person",
            "school_decided_by": "person",
        }
    ),
    "agreement": Cover(
        {"student_id": "student", "signer_person_id": "person", "signer_account_id": "account"}
    ),
    "pickup_adult": Cover({"student_id": "student", "created_by": "person"}),
    "go_home_alone_consent": Cover({"student_id": "student", "person_id": "person", "account_id": "account"}),
    "absence": Cover({"student_id": "student", "reported_by": "person"}),
    "attendance": Cover({"student_id": "student", "marked_by": "person"}),
    "handover": Cover({"student_id": "student", "staff_person_id": "person"}),
    "handover_request": Cover({"student_id": "student", "staff_person_id": "person", "decided_by": "person"}),
    "late_alert": Cover({"student_id": "student"}),
    "notice": Cover({"author_person_id": "person"}),
    "notice_delivery": Cover({"account_id": "account"}),
    "notice_preference": Cover({"account_id": "account"}),
    "outbox": Cover({"account_id": "account"}, hidden=frozenset({"claimed_by", "claimed_until"})),
    "conversation_state": Cover({"account_id": "account"}),
    "survey": Cover({"created_by_person_id": "person"}),
    "survey_invitation": Cover({"person_id": "person"}),
    # Named responses only: an anonymous one has no person and cannot be found (see ANONYMOUS).
    "survey_response": Cover({"person_id": "person"}, hidden=frozenset({"respondent_key"})),
    "survey_answer": Cover(via=(("response_id", "survey_response", "id"),)),
    "feedback_setting": Cover({"person_id": "person"}),
    # Named comments only: an anonymous comment has no person (see ANONYMOUS).
    "feedback": Cover({"person_id": "person"}),
    "dashboard_link": Cover({"person_id": "person"}, hidden=frozenset({"secret_hash"})),
    "dashboard_session": Cover({"person_id": "person"}, hidden=frozenset({"secret_hash"})),
    "group_duty": Cover({"person_id": "person"}),
    "vetting": Cover({"person_id": "person"}),
    "placement_proposal": Cover({"created_by": "person"}),
    "erasure_request": Cover(
        {"person_id": "person", "account_id": "account", "decided_by_person_id": "person"}
    ),
    # Last: entries the person's accounts made, or about any row exported above. Ids only.
    "audit_log": Cover({"actor_person_id": "person", "actor_account_id": "account"}),
}

# Tables that refer to a person, an account or a student but are not exported, and why.
EXCLUDED: dict[str, str] = {}

# Anonymous answers are designed not to be linkable to anyone, so they cannot be in the export:
# an anonymous comment stores no person, and an anonymous survey response stores only an HMAC
# key under a secret kept outside the database, erased when the survey closes.
ANONYMOUS = ("feedback", "survey_response")

# Audit target types that are not table names.
_AUDIT_TARGETS = {
    "invite": "invite_code",
    "group": "service_group",
    "proposal": "placement_proposal",
    "terms": "terms_version",
}


@dataclass(frozen=True)
class Subjects:
    """Whom an export or an erasure is about."""

    people: list[int]
    accounts: list[int]
    students: list[int]

    def ids(self, kind: Subject) -> list[int]:
        return {"person": self.people, "account": self.accounts, "student": self.students}[kind]


async def parent_people(session: AsyncSession, account_id: int) -> list[Person]:
    """The parent people an account is bound to (staff people of the same account are not included)."""
    return list(
        await session.scalars(
            select(Person)
            .join(AccountBinding, AccountBinding.person_id == Person.id)
            .join(PersonRole, PersonRole.person_id == Person.id)
            .where(AccountBinding.account_id == account_id, PersonRole.role == Role.PARENT.value)
            .order_by(Person.id)
            .distinct()
        )
    )


async def subjects_of(session: AsyncSession, people: list[int]) -> Subjects:
    """These people, every account bound to them, and every child they are a guardian of."""
    if not people:
        return Subjects([], [], [])
    accounts = await session.scalars(
        select(AccountBinding.account_id)
        .where(AccountBinding.person_id.in_(people))
        .distinct()
        .order_by(AccountBinding.account_id)
    )
    students = await session.scalars(
        select(Guardianship.student_id)
        .where(Guardianship.person_id.in_(people))
        .distinct()
        .order_by(Guardianship.student_id)
    )
    return Subjects(sorted(people), list(accounts), list(students))


def _json(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


async def export_person_data(session: AsyncSession, account_id: int) -> dict[str, Any]:
    """Every row about the account's parent people, their accounts and their children, by table.

    Returns {"format", "subjects", "tables"}; `tables` maps a table name to its rows (lists of
    column → JSON value), hidden columns left out. Empty tables are listed too, so the reader
    sees what was looked at.
    """
    people = [p.id for p in await parent_people(session, account_id)]
    who = await subjects_of(session, people)
    tables: dict[str, list[dict[str, Any]]] = {}
    metadata = Base.metadata.tables
    for name, cover in REGISTRY.items():
        table = metadata[name]
        conditions: list[ColumnElement[bool]] = []
        for column, kind in cover.columns.items():
            ids = who.ids(kind)
            if ids:
                conditions.append(table.c[column].in_(ids))
        for column, other, other_column in cover.via:
            ids = sorted(
                {row[other_column] for row in tables.get(other, []) if row[other_column] is not None}
            )
            if ids:
                conditions.append(table.c[column].in_(ids))
        if name == "audit_log":
            conditions.extend(_audit_targets(table, tables))
        rows: list[dict[str, Any]] = []
        if conditions:
            result = await session.execute(select(table).where(or_(*conditions)).order_by(*table.primary_key))
            rows = [
                {k: _json(v) for k, v in row.items() if k not in cover.hidden} for row in result.mappings()
            ]
        tables[name] = rows
    return {
        "format": FORMAT,
        "subjects": {"people": who.people, "accounts": who.accounts, "students": who.students},
        "tables": tables,
    }


def _audit_targets(table: Table, tables: dict[str, list[dict[str, Any]]]) -> list[ColumnElement[bool]]:
    """Audit entries whose target is a row already in the export."""
    conditions: list[ColumnElement[bool]] = []
    targets = {**{t: t for t in REGISTRY}, **_AUDIT_TARGETS}
    for target_type, table_name in targets.items():
        ids = sorted({row["id"] for row in tables.get(table_name, []) if "id" in row})
        if ids:
            conditions.append(and_(table.c.target_type == target_type, table.c.target_id.in_(ids)))
    return conditions


# -- erasure ------------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    OK = "ok"
    PENDING = "pending"  # a request is already waiting for the school
    NOT_PARENT = "not_parent"
    FORBIDDEN = "forbidden"  # the decider is not an admin of the request's school
    STALE = "stale"  # already decided, or not found


@dataclass(frozen=True)
class Kept:
    """What erasure keeps because the law or the school's safety duty requires it (counts only)."""

    agreements: int = 0
    applications: int = 0  # those a kept agreement was signed for
    alone_consents: int = 0
    handovers: int = 0
    attendance: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v}


async def kept_on_erasure(session: AsyncSession, person_id: int) -> Kept:
    """What would be kept if this person's data were erased now (told before they confirm)."""
    last = await last_guardian_of(session, person_id)
    signed_apps = select(Agreement.application_id).where(
        or_(Agreement.signer_person_id == person_id, Agreement.student_id.in_(last or [-1]))
    )
    return Kept(
        agreements=await _count(
            session,
            select(func.count(Agreement.id)).where(
                or_(Agreement.signer_person_id == person_id, Agreement.student_id.in_(last or [-1]))
            ),
        ),
        applications=await _count(
            session, select(func.count(func.distinct(Application.id))).where(Application.id.in_(signed_apps))
        ),
        alone_consents=await _count(
            session,
            select(func.count(GoHomeAloneConsent.id)).where(
                or_(
                    GoHomeAloneConsent.person_id == person_id, GoHomeAloneConsent.student_id.in_(last or [-1])
                )
            ),
        ),
        handovers=await _count(session, _student_count("handover", last)),
        attendance=await _count(session, _student_count("attendance", last)),
    )


def _student_count(table_name: str, students: list[int]) -> Any:
    table = Base.metadata.tables[table_name]
    return select(func.count()).select_from(table).where(table.c.student_id.in_(students or [-1]))


async def _count(session: AsyncSession, query: Any) -> int:
    return int(await session.scalar(query) or 0)


async def last_guardian_of(session: AsyncSession, person_id: int) -> list[int]:
    """The children this person is the only guardian of on the school's roster."""
    mine = select(Guardianship.student_id).where(Guardianship.person_id == person_id)
    others = select(Guardianship.student_id).where(
        Guardianship.student_id.in_(mine), Guardianship.person_id != person_id
    )
    return list(
        await session.scalars(
            select(Guardianship.student_id)
            .where(Guardianship.person_id == person_id, Guardianship.student_id.not_in(others))
            .order_by(Guardianship.student_id)
        )
    )


@dataclass(frozen=True)
class Plan:
    """What erasing these people would do: counts kept by law, and the children's names whose
    service data goes (no other guardian) or stays (another guardian keeps it)."""

    kept: dict[str, int]
    last: list[str]
    shared: list[str]


async def erasure_plan(session: AsyncSession, people: list[int]) -> Plan:
    kept: dict[str, int] = {}
    last: set[int] = set()
    for person_id in people:
        for key, n in (await kept_on_erasure(session, person_id)).as_dict().items():
            kept[key] = kept.get(key, 0) + n
        last.update(await last_guardian_of(session, person_id))
    rows = await session.execute(
        select(Student.id, Student.name)
        .where(Student.id.in_(select(Guardianship.student_id).where(Guardianship.person_id.in_(people))))
        .order_by(Student.name, Student.id)
    )
    children = [(int(i), str(n)) for i, n in rows]
    return Plan(kept, [n for i, n in children if i in last], [n for i, n in children if i not in last])


@dataclass
class Requested:
    outcome: Outcome
    request: ErasureRequest | None = None
    admins: list[int] = field(default_factory=list)


async def pending_request(session: AsyncSession, person_ids: list[int]) -> ErasureRequest | None:
    return await session.scalar(
        select(ErasureRequest)
        .where(ErasureRequest.person_id.in_(person_ids), ErasureRequest.status == ErasureStatus.PENDING.value)
        .order_by(ErasureRequest.id)
        .limit(1)
    )


async def request_erasure(session: AsyncSession, account_id: int, now: datetime) -> Requested:
    """A parent asks the school to erase their data: one pending request per person.

    An account bound to two parent people (a parent of two pupils) asks for both: one request each.
    """
    people = await parent_people(session, account_id)
    if not people:
        return Requested(Outcome.NOT_PARENT)
    # Serialise two presses of "confirm" for the same person (PostgreSQL; SQLite writes one at a time).
    await session.execute(select(Person.id).where(Person.id.in_([p.id for p in people])).with_for_update())
    existing = await pending_request(session, [p.id for p in people])
    if existing is not None:
        return Requested(Outcome.PENDING, existing)
    first: ErasureRequest | None = None
    for person in people:
        row = ErasureRequest(
            school_id=person.school_id,
            person_id=person.id,
            account_id=account_id,
            status=ErasureStatus.PENDING.value,
            requested_at=now,
            kept={},
        )
        session.add(row)
        await session.flush()
        await audit.record(
            session,
            "privacy.erasure_requested",
            school_id=person.school_id,
            actor_person_id=person.id,
            actor_account_id=account_id,
            target_type="erasure_request",
            target_id=row.id,
        )
        first = first or row
    assert first is not None
    return Requested(Outcome.OK, first, await admins_of(session, first.school_id))


async def requests_for(session: AsyncSession, request: ErasureRequest) -> list[ErasureRequest]:
    """The pending requests made together with this one (one per person of the same account)."""
    return list(
        await session.scalars(
            select(ErasureRequest)
            .where(
                ErasureRequest.account_id == request.account_id,
                ErasureRequest.requested_at == request.requested_at,
                ErasureRequest.status == ErasureStatus.PENDING.value,
            )
            .order_by(ErasureRequest.id)
        )
    )


@dataclass
class Decided:
    outcome: Outcome
    request: ErasureRequest | None = None
    kept: Kept = field(default_factory=Kept)
    # The accounts the person had, captured before unbinding: they are told the outcome.
    accounts: list[PlatformAccount] = field(default_factory=list)
    # Accounts left with no binding at all: their stored files (exports) may be removed.
    unbound_accounts: list[int] = field(default_factory=list)
    # Children offered a place freed by a withdrawn application (the caller tells their guardians).
    offers: list[Application] = field(default_factory=list)


async def _decidable(
    session: AsyncSession, request_id: int, admin_people: list[int]
) -> tuple[Outcome, ErasureRequest | None]:
    """The pending request, locked, if one of these people is an admin of its school (re-read here)."""
    request = await session.scalar(
        select(ErasureRequest).where(ErasureRequest.id == request_id).with_for_update()
    )
    if request is None:
        return Outcome.STALE, None
    if not await is_admin(session, admin_people, request.school_id):
        return Outcome.FORBIDDEN, request
    if request.status != ErasureStatus.PENDING.value or request.person_id is None:
        return Outcome.STALE, request
    return Outcome.OK, request


async def _decider(session: AsyncSession, admin_people: list[int], school_id: int) -> int:
    found = await session.scalar(
        select(PersonRole.person_id).where(
            PersonRole.person_id.in_(admin_people),
            PersonRole.school_id == school_id,
            PersonRole.role == Role.ADMIN.value,
        )
    )
    assert found is not None
    return int(found)


async def refuse_erasure(
    session: AsyncSession, request_id: int, admin_people: list[int], now: datetime
) -> Decided:
    """An admin refuses: nothing is erased; the person is told (the caller sends the message)."""
    outcome, request = await _decidable(session, request_id, admin_people)
    if outcome is not Outcome.OK or request is None:
        return Decided(outcome, request)
    assert request.person_id is not None
    decider = await _decider(session, admin_people, request.school_id)
    request.status = ErasureStatus.REFUSED.value
    request.decided_at, request.decided_by_person_id = now, decider
    await audit.record(
        session,
        "privacy.erasure_refused",
        school_id=request.school_id,
        actor_person_id=decider,
        target_type="erasure_request",
        target_id=request.id,
    )
    return Decided(Outcome.OK, request, accounts=await accounts_of_person(session, request.person_id))


async def erase_person(
    session: AsyncSession, request_id: int, admin_person_id: int | list[int], now: datetime
) -> Decided:
    """Erase a parent's personal data once an admin of their school agrees.

    Kept (and counted in the request): signed agreements with the applications they were signed
    for, go-home-alone consents (kept like a signature), and, for a child whose last guardian this
    is, the attendance and handover records (the school's safety record, policy 4.4). The person
    row stays, anonymised, because those records point at it; the audit log holds ids only.
    A child with another guardian keeps its service data: it belongs to that family too.
    """
    admins = admin_person_id if isinstance(admin_person_id, list) else [admin_person_id]
    outcome, request = await _decidable(session, request_id, admins)
    if outcome is not Outcome.OK or request is None or request.person_id is None:
        return Decided(outcome, request)
    decider = await _decider(session, admins, request.school_id)
    person_id = request.person_id
    person = await session.get(Person, person_id)
    assert person is not None
    kept = await kept_on_erasure(session, person_id)
    last = await last_guardian_of(session, person_id)
    accounts = await accounts_of_person(session, person_id)
    decided = Decided(Outcome.OK, request, kept, accounts)

    # Children with no other guardian: close their active applications (a place goes to the next
    # child), then erase the service data that is not kept.
    if last:
        active = await session.scalars(
            select(Application.id).where(
                Application.student_id.in_(last), Application.status.in_(ACTIVE_APPLICATION)
            )
        )
        for app_id in list(active):
            result = await enrollment.withdraw(session, app_id, [person_id], None, now)
            decided.offers.extend(result.offers)
        signed = select(Agreement.application_id)
        await session.execute(
            delete(Application).where(Application.student_id.in_(last), Application.id.not_in(signed))
        )
        # A kept application keeps its decisions, not the family's note asking for a fee waiver.
        await session.execute(
            update(Application).where(Application.student_id.in_(last)).values(waiver_note="")
        )
        for model in (Absence, PickupAdult, LateAlert):
            await session.execute(delete(model).where(model.student_id.in_(last)))
        await session.execute(
            delete(HandoverRequest).where(
                HandoverRequest.student_id.in_(last), HandoverRequest.status == "pending"
            )
        )
        await session.execute(delete(InviteCode).where(InviteCode.student_id.in_(last)))

    # The person's own rows.
    await session.execute(update(Absence).where(Absence.reported_by == person_id).values(reported_by=None))
    # Pickup adults of a child with another guardian stay on the child's list (removing them would
    # stop a grandmother another guardian relies on); only the link to this person goes.
    await session.execute(
        update(PickupAdult).where(PickupAdult.created_by == person_id).values(created_by=None)
    )
    await session.execute(delete(SurveyResponse).where(SurveyResponse.person_id == person_id))
    for model in (
        SurveyInvitation,
        FeedbackSetting,
        Feedback,
        DashboardLink,
        DashboardSession,
        PrivacyConsent,
        InviteCode,
        Guardianship,
        PersonRole,
    ):
        await session.execute(delete(model).where(model.person_id == person_id))
    await session.execute(delete(AccountBinding).where(AccountBinding.person_id == person_id))

    # Accounts no longer bound to anyone keep only what any visitor's chat has (platform id, chat,
    # language) so the outcome can still reach them; everything else about them goes.
    for account in accounts:
        still = await session.scalar(select(AccountBinding.id).where(AccountBinding.account_id == account.id))
        if still is not None:
            continue
        decided.unbound_accounts.append(account.id)
        for model in (ConversationState, NoticePreference, InviteFailure, NoticeDelivery, Outbox):
            await session.execute(delete(model).where(model.account_id == account.id))

    person.name, person.phone_tail = ERASED_NAME, None
    # A new roster key, so a later roster import makes a new person instead of reviving this one.
    person.person_no = f"erased-{person.id}"
    request.status = ErasureStatus.DONE.value
    request.decided_at, request.decided_by_person_id = now, decider
    request.kept = kept.as_dict()
    request.person_id, request.account_id = None, None
    await audit.record(
        session,
        "privacy.erased",
        school_id=request.school_id,
        actor_person_id=decider,
        target_type="erasure_request",
        target_id=request.id,
        person=person_id,
        children=len(last),
        **kept.as_dict(),
    )
    await session.flush()
    return decided


def remove_exports(files_dir: Path | None, account_ids: Iterable[int]) -> None:
    """Delete the /mydata files written for these accounts (they hold everything about a person)."""
    if files_dir is None:
        return
    for account_id in account_ids:
        shutil.rmtree(files_dir / export_folder(account_id), ignore_errors=True)


def export_folder(account_id: int) -> str:
    """Where an account's /mydata files lie, relative to DATA_DIR."""
    return f"mydata/a{account_id}"
