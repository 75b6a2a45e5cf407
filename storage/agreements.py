"""Service agreements (课后服务协议书): signed deliberately, kept intact, re-signed when terms change.

The agreement's text is rendered by messages/ from the placement and the terms version; this module
stores exactly the text the parent was shown with its SHA-256, and never changes a signed row.
"""

from __future__ import annotations

import enum
import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, enrollment, groups
from storage.fees import FeeStandard, Waiver, monthly_bill
from storage.models import (
    AccountBinding,
    Agreement,
    Application,
    ApplicationStatus,
    Guardianship,
    Person,
    School,
    SchoolClass,
    ServiceGroup,
    Student,
    TermsVersion,
)
from storage.terms import AGREEMENT_FIELDS

MAX_REMINDERS = 2


class Outcome(enum.StrEnum):
    OK = "ok"
    FORBIDDEN = "forbidden"
    STALE = "stale"  # not placed (any more), or the text changed since it was shown
    NAME_MISMATCH = "name_mismatch"
    ALREADY_SIGNED = "already_signed"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def same_name(typed: str, registered: str) -> bool:
    """Names match ignoring spaces (also full-width), case and compatibility forms (ＡＢ = AB)."""

    def norm(value: str) -> str:
        return "".join(unicodedata.normalize("NFKC", value).split()).casefold()

    return bool(norm(typed)) and norm(typed) == norm(registered)


async def agreement_facts(
    session: AsyncSession, app: Application, terms: TermsVersion, month: Any
) -> dict[str, Any]:
    """Everything the agreement template needs, all taken from the placement and `terms` (the
    newest published version: the one the parent signs)."""
    student = await session.get(Student, app.student_id)
    cls = await session.get(SchoolClass, student.class_id) if student else None
    school = await session.get(School, app.school_id)
    group = await session.get(ServiceGroup, app.group_id) if app.group_id else None
    staff = (await groups.staff_on_duty(session, [group.id]))[group.id] if group else []
    assert student and school and terms
    bill = monthly_bill(
        FeeStandard.from_terms(terms.content["fees"]),
        month,
        app.weekdays,
        noon_care=app.noon_care,
        lunch=app.lunch,
        waiver=Waiver(app.waiver),
    )
    return {
        "school": school.name,
        "child": student.name,
        "student_no": student.student_no,
        "class_name": cls.name if cls else "",
        "app": app,
        "group": group,
        "staff": [p.name for p in staff],
        "t": terms.content,
        "terms_version": terms.version,
        "bill": bill,
        "waived": app.waiver == Waiver.GRANTED.value,
    }


async def current(session: AsyncSession, application_id: int, now: datetime) -> Agreement | None:
    """The agreement in force for an application now (signed, and not yet replaced by new terms)."""
    rows = await session.scalars(
        select(Agreement)
        .where(Agreement.application_id == application_id)
        .order_by(Agreement.signed_at.desc(), Agreement.id.desc())
    )
    for row in rows:
        if row.valid_until is None or row.valid_until > now:
            return row
    return None


async def latest(session: AsyncSession, application_id: int) -> Agreement | None:
    return await session.scalar(
        select(Agreement)
        .where(Agreement.application_id == application_id)
        .order_by(Agreement.signed_at.desc(), Agreement.id.desc())
        .limit(1)
    )


async def needs_signature(session: AsyncSession, app: Application) -> bool:
    """Placed, and no agreement signed for the terms the child is now under."""
    if app.status != ApplicationStatus.PLACED.value:
        return False
    newest = await latest(session, app.id)
    return newest is None or newest.valid_until is not None


async def may_sign(session: AsyncSession, people: list[int], app: Application) -> Person | None:
    """The guardian of this child among `people`, if any."""
    person_id = await enrollment.guardian_among(session, people, app.student_id)
    return await session.get(Person, person_id) if person_id else None


@dataclass
class Signed:
    outcome: Outcome
    agreement: Agreement | None = None


async def sign(
    session: AsyncSession,
    application_id: int,
    people: list[int],
    account_id: int | None,
    *,
    platform: str,
    locale: str,
    text: str,
    shown_sha256: str,
    typed_name: str,
    terms: TermsVersion,
    now: datetime,
) -> Signed:
    """Store the agreement if the text is the one shown and the typed name is the signer's own."""
    app = await session.scalar(select(Application).where(Application.id == application_id).with_for_update())
    if app is None:
        return Signed(Outcome.STALE)
    signer = await may_sign(session, people, app)
    if signer is None:
        await enrollment.record_refusal(session, enrollment.Outcome.FORBIDDEN, "sign", account_id, app)
        return Signed(Outcome.FORBIDDEN)
    if not await needs_signature(session, app):
        return Signed(
            Outcome.ALREADY_SIGNED if app.status == ApplicationStatus.PLACED.value else Outcome.STALE
        )
    if digest(text) != shown_sha256:
        return Signed(Outcome.STALE)  # something in the agreement changed since it was shown
    if not same_name(typed_name, signer.name):
        return Signed(Outcome.NAME_MISMATCH)
    row = Agreement(
        school_id=app.school_id,
        application_id=app.id,
        student_id=app.student_id,
        terms_version_id=terms.id,
        signer_person_id=signer.id,
        signer_account_id=account_id,
        platform=platform,
        locale=locale,
        text=text,
        sha256=shown_sha256,
        signed_at=now,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        "agreement.signed",
        school_id=app.school_id,
        actor_person_id=signer.id,
        actor_account_id=account_id,
        target_type="agreement",
        target_id=row.id,
        application_id=app.id,
        sha256=shown_sha256,
    )
    return Signed(Outcome.OK, row)


@dataclass(frozen=True)
class Verification:
    agreement_id: int
    intact: bool
    stored: str
    computed: str


async def verify(session: AsyncSession, agreement_id: int) -> Verification | None:
    row = await session.get(Agreement, agreement_id)
    if row is None:
        return None
    computed = digest(row.text)
    return Verification(row.id, computed == row.sha256, row.sha256, computed)


async def signed_by(session: AsyncSession, people: list[int]) -> list[Agreement]:
    """Agreements for the children these people are guardians of, newest first."""
    children = select(Guardianship.student_id).where(Guardianship.person_id.in_(people))
    return list(
        await session.scalars(
            select(Agreement).where(Agreement.student_id.in_(children)).order_by(Agreement.signed_at.desc())
        )
    )


def changes_agreement(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return any(old.get(key) != new.get(key) for key in AGREEMENT_FIELDS)


async def supersede(session: AsyncSession, school_id: int, new: TermsVersion) -> list[Application]:
    """New terms that change fees, hours or responsibilities: each agreement in force whose terms
    differ holds until the new terms take effect; its child's parents are to sign again."""
    moved = []
    rows = await session.execute(
        select(Agreement, TermsVersion, Application)
        .join(TermsVersion, TermsVersion.id == Agreement.terms_version_id)
        .join(Application, Application.id == Agreement.application_id)
        .where(
            Agreement.school_id == school_id,
            Agreement.valid_until.is_(None),
            Application.status == ApplicationStatus.PLACED.value,
        )
    )
    for agreement, signed_terms, app in rows:
        if signed_terms.id != new.id and changes_agreement(signed_terms.content, new.content):
            agreement.valid_until = new.effective_from
            app.sign_requested_at, app.sign_reminders = None, 0
            moved.append(app)
    if moved:
        await audit.record(
            session,
            "agreement.terms_changed",
            school_id=school_id,
            target_type="terms",
            target_id=new.id,
            applications=len(moved),
        )
    return moved


async def not_resigned(session: AsyncSession, school_id: int) -> list[Application]:
    """Placed children whose agreement was superseded by new terms and is not signed again."""
    found = []
    for app in await session.scalars(
        select(Application).where(
            Application.school_id == school_id, Application.status == ApplicationStatus.PLACED.value
        )
    ):
        newest = await latest(session, app.id)
        if newest is not None and newest.valid_until is not None:
            found.append(app)
    return found


async def awaiting_signature(session: AsyncSession, school_id: int | None = None) -> list[Application]:
    query = select(Application).where(Application.status == ApplicationStatus.PLACED.value)
    if school_id is not None:
        query = query.where(Application.school_id == school_id)
    return [app for app in await session.scalars(query) if await needs_signature(session, app)]


def document_path(row: Agreement, filename: str) -> str:
    """Where the parent's copy lies under DATA_DIR; the folder names the agreement and its hash."""
    return f"attachments/agreement-{row.id}-{row.sha256[:16]}/{filename}"


async def document_visible_to(session: AsyncSession, account_id: int, path: str) -> bool:
    """Only an account of a guardian of the agreement's child may download its copy."""
    parts = path.split("/")
    if len(parts) != 3 or not parts[1].startswith("agreement-"):
        return False
    _, number, sha = ([*parts[1].split("-"), "", ""])[:3]
    row = await session.get(Agreement, int(number)) if number.isdigit() else None
    if row is None or not row.sha256.startswith(sha) or len(sha) != 16:
        return False
    people = select(AccountBinding.person_id).where(AccountBinding.account_id == account_id)
    found = await session.scalar(
        select(Guardianship.id).where(
            Guardianship.student_id == row.student_id, Guardianship.person_id.in_(people)
        )
    )
    return found is not None
