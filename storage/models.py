"""The schema. Every school-owned row carries `school_id`; platform rows (accounts, update ids) are global."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite stores them naive, PostgreSQL as timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class Role(enum.StrEnum):
    PARENT = "parent"
    TEACHER = "teacher"
    STAFF = "staff"
    COMMITTEE = "committee"
    ADMIN = "admin"


class Lane(enum.StrEnum):
    SAFETY = "safety"
    INTERACTIVE = "interactive"
    BULK = "bulk"


class OutboxStatus(enum.StrEnum):
    """A row's state. Pending rows may be held by a sender (claimed_by, claimed_until: a lease);
    the other three are final."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # the platform refused this message (e.g. malformed) or retries ran out
    UNREACHABLE = "unreachable"  # the person blocked the bot or left: the account is marked too


def _now() -> Any:
    return func.now()


# A partial index's condition, on both databases (migration 0006 writes the same).
PENDING_ONLY: dict[str, Any] = {
    "postgresql_where": text("status = 'pending'"),
    "sqlite_where": text("status = 'pending'"),
}


class School(Base):
    __tablename__ = "school"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    created_at: Mapped[datetime] = mapped_column(server_default=_now())


class SchoolClass(Base):
    __tablename__ = "school_class"
    __table_args__ = (UniqueConstraint("school_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    grade: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    head_teacher_id: Mapped[int | None] = mapped_column(
        ForeignKey("person.id", ondelete="SET NULL"), index=True
    )


class Student(Base):
    __tablename__ = "student"
    __table_args__ = (UniqueConstraint("school_id", "student_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[int] = mapped_column(ForeignKey("school_class.id"), index=True)
    student_no: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(default=True)

    school_class: Mapped[SchoolClass] = relationship(lazy="joined")


class Person(Base):
    """A named adult of a school: a guardian, a teacher, staff, a committee member or an admin."""

    __tablename__ = "person"
    __table_args__ = (UniqueConstraint("school_id", "person_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    # A stable key from the roster: the staff number, or `<student_no>-G<n>` for a guardian.
    person_no: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    # Only the last four digits of a phone number are ever stored (data minimisation).
    phone_tail: Mapped[str | None] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())


class PersonRole(Base):
    __tablename__ = "person_role"
    __table_args__ = (UniqueConstraint("person_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))


class Guardianship(Base):
    __tablename__ = "guardianship"
    __table_args__ = (UniqueConstraint("student_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    relation: Mapped[str] = mapped_column(String(32))
    # Roster order: the first guardian is the primary contact.
    position: Mapped[int] = mapped_column(Integer, default=1)


class PlatformAccount(Base):
    """One chat identity on one platform; invites bind it to roster people (AccountBinding)."""

    __tablename__ = "platform_account"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(8))
    unreachable_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=_now())


class AccountBinding(Base):
    """An account speaks for a person. A parent of two pupils, or a teacher who is also a parent,
    holds one binding per roster person; all of one account's bindings are in one school."""

    __tablename__ = "account_binding"
    __table_args__ = (UniqueConstraint("account_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("platform_account.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    bound_at: Mapped[datetime] = mapped_column(server_default=_now())


class InviteCode(Base):
    __tablename__ = "invite_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int | None] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    used_by_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("platform_account.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=_now())


class InviteFailure(Base):
    """Wrong codes per account, to slow down guessing (at most 5 an hour)."""

    __tablename__ = "invite_failure"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("platform_account.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column()


class TermsVersion(Base):
    """An immutable published version of the service terms (主动公开)."""

    __tablename__ = "terms_version"
    __table_args__ = (UniqueConstraint("school_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, Any]] = mapped_column()
    content_sha256: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[datetime] = mapped_column()
    published_at: Mapped[datetime] = mapped_column(server_default=_now())


class ConversationState(Base):
    """Where a chat is in a flow, with its draft; kept in the database so any worker can continue."""

    __tablename__ = "conversation_state"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("platform_account.id", ondelete="CASCADE"), primary_key=True
    )
    flow: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(server_default=_now(), onupdate=_now())


class ProcessedUpdate(Base):
    """Update ids already handled, so a re-delivered update has no second effect."""

    __tablename__ = "processed_update"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[datetime] = mapped_column(server_default=_now(), index=True)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(server_default=_now())
    actor_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    actor_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("platform_account.id", ondelete="SET NULL")
    )
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column()
    # Ids and short codes only: never names, free text or phone digits.
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Outbox(Base):
    """A message to someone other than the actor, written in the same transaction as its cause.

    See docs/delivery.md for the states of a row and how a sender claims it.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # Only pending rows (the sent ones, nearly all of the table, are not in these). A claim reads
        # one lane's due rows earliest first and stops at its limit: a backlog held for quiet hours
        # lies past the range on not_before instead of being walked on every poll (docs/deploy.md).
        Index("ix_outbox_pending", "lane", "not_before", "id", **PENDING_ONLY),
        # The rows one sender holds: its lease renewals and releases.
        Index("ix_outbox_holder", "claimed_by", **PENDING_ONLY),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("platform_account.id", ondelete="CASCADE"), index=True)
    lane: Mapped[str] = mapped_column(String(16), default=Lane.INTERACTIVE)
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(server_default=_now())
    sent_at: Mapped[datetime | None] = mapped_column()
    # Set whenever delivery was tried; tells a retry or an offline wait from a scheduled message.
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    # The sender holding a pending row, until when (a lease another sender may take over once it
    # has run out). Kept on a sent row: it names the process that sent it.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column()
    # A copy queued on another account of the same person after this one proved unreachable.
    rerouted_from_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))


class NoticeStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # one-off, waiting for send_at
    RECURRING = "recurring"  # an active series: each firing issues a copy
    SENT = "sent"
    CANCELLED = "cancelled"
    MISSED = "missed"  # the scheduler was down past the grace period; never sent


class DeliveryStatus(enum.StrEnum):
    HELD = "held"  # waiting for the recipient's daily digest
    QUEUED = "queued"  # in the outbox (the outbox row says whether it went out)


class Notice(Base):
    """A school notice. A recurring one is a series; each firing issues a copy with `series_id`,
    so every issued notice has its own deliveries, acknowledgements and report."""

    __tablename__ = "notice"
    __table_args__ = (UniqueConstraint("series_id", "scheduled_for"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("notice.id", ondelete="CASCADE"), index=True)
    author_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # "school", "grade", "class" or "role", and the grade name, class name or role it names.
    audience_kind: Mapped[str] = mapped_column(String(16))
    audience_value: Mapped[str] = mapped_column(String(100), default="")
    urgent: Mapped[bool] = mapped_column(default=False)
    attachment_name: Mapped[str | None] = mapped_column(String(200))
    # Relative to DATA_DIR (attachments/<token>/<file>).
    attachment_path: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), index=True)
    send_at: Mapped[datetime | None] = mapped_column()
    cron: Mapped[str | None] = mapped_column(String(100))
    scheduled_for: Mapped[datetime | None] = mapped_column()
    ack_deadline: Mapped[datetime | None] = mapped_column()
    ack_within_hours: Mapped[int | None] = mapped_column(Integer)
    people_count: Mapped[int] = mapped_column(Integer, default=0)
    not_joined_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(server_default=_now())
    sent_at: Mapped[datetime | None] = mapped_column()


class NoticeDelivery(Base):
    """One issued notice to one account. `outbox_id` is a plain column, not a foreign key: the
    outbox belongs to the sender and may be migrated or purged without touching this history."""

    __tablename__ = "notice_delivery"
    __table_args__ = (UniqueConstraint("notice_id", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notice.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("platform_account.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    outbox_id: Mapped[int | None] = mapped_column(Integer, index=True)
    acked_at: Mapped[datetime | None] = mapped_column()
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    last_reminded_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()


class NoticePreference(Base):
    """How an account wants non-urgent notices: instant or a daily digest, and its quiet hours.
    No row means the defaults (instant, quiet 21:00–07:00)."""

    __tablename__ = "notice_preference"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("platform_account.id", ondelete="CASCADE"), primary_key=True
    )
    # "HH:MM" in the school's time zone, or None for instant delivery.
    digest_time: Mapped[str | None] = mapped_column(String(5))
    # "HH:MM-HH:MM" in the school's time zone, or "" for no quiet hours.
    quiet_hours: Mapped[str] = mapped_column(String(11))
    updated_at: Mapped[datetime] = mapped_column(server_default=_now(), onupdate=_now())


class ApplicationStatus(enum.StrEnum):
    SUBMITTED = "submitted"  # waiting for the class teacher (班级初审)
    CLASS_APPROVED = "class_approved"  # waiting for the school (学校核准)
    APPROVED = "approved"  # approved, waiting for a place (统筹安排)
    PLACED = "placed"
    WAITING = "waiting"  # on the waiting list
    OFFERED = "offered"  # a freed place is offered; the parent accepts or declines
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


ACTIVE_APPLICATION = (
    ApplicationStatus.SUBMITTED.value,
    ApplicationStatus.CLASS_APPROVED.value,
    ApplicationStatus.APPROVED.value,
    ApplicationStatus.PLACED.value,
    ApplicationStatus.WAITING.value,
    ApplicationStatus.OFFERED.value,
)


class ServiceGroup(Base):
    """A group children are placed in: an activity, a room, weekdays, a capacity, staff on duty."""

    __tablename__ = "service_group"
    __table_args__ = (UniqueConstraint("school_id", "term", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    term: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(100))
    activity_type: Mapped[str] = mapped_column(String(32))
    room: Mapped[str] = mapped_column(String(100), default="")
    weekdays: Mapped[list[str]] = mapped_column(JSON)
    capacity: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(default=True)


class GroupDuty(Base):
    """A member of staff on duty with a group; only with valid vetting (品德、健康、资质)."""

    __tablename__ = "group_duty"
    __table_args__ = (UniqueConstraint("group_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("service_group.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    assigned_at: Mapped[datetime] = mapped_column(server_default=_now())


class Vetting(Base):
    """The moral, health and qualification checks of a person, with who checked and until when."""

    __tablename__ = "vetting"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    moral_ok: Mapped[bool] = mapped_column()
    health_ok: Mapped[bool] = mapped_column()
    qualification_ok: Mapped[bool] = mapped_column()
    checked_on: Mapped[date] = mapped_column(Date)
    checked_by: Mapped[str] = mapped_column(String(100))
    valid_until: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(String(500), default="")
    recorded_at: Mapped[datetime] = mapped_column(server_default=_now())
    expiry_warned_on: Mapped[date | None] = mapped_column(Date)


class Application(Base):
    """A parent's voluntary application for one child and one term, and every decision on it."""

    __tablename__ = "application"
    __table_args__ = (Index("ix_application_queue", "school_id", "term", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    applicant_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    terms_version_id: Mapped[int] = mapped_column(ForeignKey("terms_version.id"))
    term: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20), default=ApplicationStatus.SUBMITTED.value)
    weekdays: Mapped[list[str]] = mapped_column(JSON)
    noon_care: Mapped[bool] = mapped_column(default=False)
    lunch: Mapped[bool] = mapped_column(default=False)
    activities: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority_claimed: Mapped[list[str]] = mapped_column(JSON, default=list)
    # What the class teacher confirmed (None until reviewed); only confirmed groups count.
    priority_confirmed: Mapped[list[str] | None] = mapped_column(JSON)
    waiver_requested: Mapped[bool] = mapped_column(default=False)
    waiver_note: Mapped[str] = mapped_column(String(300), default="")
    waiver: Mapped[str] = mapped_column(String(16), default="none")
    applied_at: Mapped[datetime] = mapped_column()
    class_reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    class_reviewed_at: Mapped[datetime | None] = mapped_column()
    school_decided_by: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    school_decided_at: Mapped[datetime | None] = mapped_column()
    reject_reason: Mapped[str | None] = mapped_column(String(500))
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("service_group.id", ondelete="SET NULL"), index=True
    )
    placed_at: Mapped[datetime | None] = mapped_column()
    offer_expires_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    # Signing the agreement: when it was asked for, and how many reminders went (at most two).
    sign_requested_at: Mapped[datetime | None] = mapped_column()
    sign_reminders: Mapped[int] = mapped_column(Integer, default=0)


class PlacementProposal(Base):
    """A placement the school reviews before it takes effect (admins confirm)."""

    __tablename__ = "placement_proposal"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    term: Mapped[str] = mapped_column(String(60))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="proposed")  # proposed|confirmed|discarded
    placements: Mapped[list[list[int]]] = mapped_column(JSON)  # [[application id, group id], ...]
    waiting: Mapped[list[int]] = mapped_column(JSON)


class Agreement(Base):
    """A signed service agreement (课后服务协议书): the exact text shown, its SHA-256, who signed it,
    when and where. Never changed once signed; new terms that change it lead to a new one."""

    __tablename__ = "agreement"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("application.id"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id"), index=True)
    terms_version_id: Mapped[int] = mapped_column(ForeignKey("terms_version.id"))
    signer_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    signer_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("platform_account.id", ondelete="SET NULL")
    )
    platform: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column()
    # Set when newer terms change what was agreed: the old agreement holds until they take effect.
    valid_until: Mapped[datetime | None] = mapped_column()


class PickupAdult(Base):
    """An adult a parent authorised to collect a child; `only_on` makes it a one-day authorisation."""

    __tablename__ = "pickup_adult"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(32))
    phone_tail: Mapped[str | None] = mapped_column(String(4))
    code: Mapped[str] = mapped_column(String(4))
    only_on: Mapped[date | None] = mapped_column(Date)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())
    removed_at: Mapped[datetime | None] = mapped_column()


class GoHomeAloneConsent(Base):
    """A guardian's explicit consent that an older child may go home alone, kept like a signature."""

    __tablename__ = "go_home_alone_consent"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("platform_account.id", ondelete="SET NULL"))
    text_sha256: Mapped[str] = mapped_column(String(64))
    consented_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class Absence(Base):
    """A parent's notice that a child will not attend on some days."""

    __tablename__ = "absence"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200))
    reported_by: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    reported_at: Mapped[datetime] = mapped_column()


class Attendance(Base):
    """Present or absent, per child and service day (考勤)."""

    __tablename__ = "attendance"
    __table_args__ = (UniqueConstraint("student_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("service_group.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    present: Mapped[bool] = mapped_column()
    marked_by: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    marked_at: Mapped[datetime] = mapped_column()


class Handover(Base):
    """The one handover record of a child on a day (交接): to whom, by whom, when. Unique per day."""

    __tablename__ = "handover"
    __table_args__ = (UniqueConstraint("student_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("service_group.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # listed | one_time | allowed_once | alone
    adult_id: Mapped[int | None] = mapped_column(ForeignKey("pickup_adult.id", ondelete="SET NULL"))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("handover_request.id", ondelete="SET NULL"))
    adult_name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(32))
    code_verified: Mapped[bool] = mapped_column(default=False)
    staff_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    handed_at: Mapped[datetime] = mapped_column()


class HandoverRequest(Base):
    """An adult not on the list came: the parents allow or refuse this once; no answer escalates."""

    __tablename__ = "handover_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("service_group.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    adult_name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(32))
    staff_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    requested_at: Mapped[datetime] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|allowed|refused
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column()
    escalated_at: Mapped[datetime | None] = mapped_column()


class LateAlert(Base):
    """Late pickup alerts for a child on a day: how many went out, and whether the admin was told."""

    __tablename__ = "late_alert"
    __table_args__ = (UniqueConstraint("student_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("student.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date)
    alerts: Mapped[int] = mapped_column(Integer, default=0)
    last_alert_at: Mapped[datetime | None] = mapped_column()
    escalated_at: Mapped[datetime | None] = mapped_column()


class DaySummary(Base):
    """The end-of-day summary sent for a group, so it is sent once."""

    __tablename__ = "day_summary"
    __table_args__ = (UniqueConstraint("group_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("service_group.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    sent_at: Mapped[datetime] = mapped_column()


# -- surveys, feedback and the committee dashboard ---------------------------------------------


class SurveyStatus(enum.StrEnum):
    SCHEDULED = "scheduled"  # stored, waiting for its opening time
    OPEN = "open"  # invitations sent; answers taken until closes_at
    CLOSED = "closed"  # results final; the summary went to the committee and admins
    CANCELLED = "cancelled"


class QuestionKind(enum.StrEnum):
    SINGLE = "single"
    MULTIPLE = "multiple"
    RATING = "rating"  # 1–5
    TEXT = "text"  # short free text


class Survey(Base):
    """A questionnaire for an audience, open between two times. `kind` is "survey" (defined by
    an admin or the committee) or "feedback" (a periodic round about one service group)."""

    __tablename__ = "survey"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="survey")
    title: Mapped[str] = mapped_column(String(200))
    intro: Mapped[str] = mapped_column(Text, default="")
    anonymous: Mapped[bool] = mapped_column(default=False)
    # "school", "grade", "class", "group" (a service group id) or "role", and what it names.
    audience_kind: Mapped[str] = mapped_column(String(16))
    audience_value: Mapped[str] = mapped_column(String(100), default="")
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("service_group.id", ondelete="SET NULL"), index=True
    )
    opens_at: Mapped[datetime] = mapped_column()
    closes_at: Mapped[datetime] = mapped_column()
    # Hours before closing at which non-respondents are reminded (at most two).
    reminder_hours: Mapped[list[int]] = mapped_column(JSON, default=list)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    invited_people: Mapped[int] = mapped_column(Integer, default=0)
    created_by_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column()
    opened_at: Mapped[datetime | None] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()
    # When the results went to the committee and admins (sent once, after closing).
    summary_sent_at: Mapped[datetime | None] = mapped_column()

    questions: Mapped[list[SurveyQuestion]] = relationship(
        order_by="SurveyQuestion.position", lazy="selectin", cascade="all, delete-orphan"
    )


class SurveyQuestion(Base):
    __tablename__ = "survey_question"
    __table_args__ = (UniqueConstraint("survey_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("survey.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 1, 2, … in the order asked
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(String(300))
    options: Mapped[list[str]] = mapped_column(JSON, default=list)
    required: Mapped[bool] = mapped_column(default=True)


class SurveyInvitation(Base):
    """A person asked to answer: whom to remind, and the response rate. For an anonymous survey
    it says only *that* the person answered, never which response is theirs."""

    __tablename__ = "survey_invitation"
    __table_args__ = (UniqueConstraint("survey_id", "person_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("survey.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    responded: Mapped[bool] = mapped_column(default=False)
    declined: Mapped[bool] = mapped_column(default=False)  # "not now": no reminders for this one
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)


class SurveyResponse(Base):
    """One person's answers. Named: `person_id` is set. Anonymous: `person_id` is NULL and
    `respondent_key` is an HMAC of the person under the deployment's secret key (not stored in
    the database), so it only stops a second response; it is erased when the survey closes.
    Anonymous responses carry no time of answering."""

    __tablename__ = "survey_response"
    __table_args__ = (UniqueConstraint("survey_id", "respondent_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("survey.id", ondelete="CASCADE"), index=True)
    respondent_key: Mapped[str | None] = mapped_column(String(64))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"), index=True)
    # The class (for breakdowns, shown only with three respondents or more).
    segment: Mapped[str] = mapped_column(String(100), default="")
    submitted: Mapped[bool] = mapped_column(default=False)
    submitted_at: Mapped[datetime | None] = mapped_column()  # named surveys only


class SurveyAnswer(Base):
    """One answer: a choice (option index from 0, or the rating 1–5) or a text. A multiple-choice
    answer has one row per option ticked plus one row with neither (so respondents are counted
    without DISTINCT). `survey_id` and the response's `segment` are repeated so that one scan of
    one index counts everything (docs/surveys.md)."""

    __tablename__ = "survey_answer"
    __table_args__ = (
        Index("ix_survey_answer_count", "survey_id", "counted", "question_id", "choice", "segment"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("survey.id", ondelete="CASCADE"))
    response_id: Mapped[int] = mapped_column(ForeignKey("survey_response.id", ondelete="CASCADE"), index=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("survey_question.id", ondelete="CASCADE"))
    choice: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(String(1000))
    segment: Mapped[str] = mapped_column(String(100), default="")
    # False while the response is not submitted yet: counting reads only counted answers.
    counted: Mapped[bool] = mapped_column(default=False)


class FeedbackSetting(Base):
    """A person who turned periodic feedback rounds off (自愿: no nagging)."""

    __tablename__ = "feedback_setting"

    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    rounds_off: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column()


class Feedback(Base):
    """A comment or concern sent with /feedback. Anonymous: no person and only the day it came."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("service_group.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(String(2000))
    received_on: Mapped[date] = mapped_column(Date)


class DashboardLink(Base):
    """A one-time sign-in link to the committee dashboard: only a hash of its secret is kept."""

    __tablename__ = "dashboard_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class DashboardSession(Base):
    """A signed-in browser: the cookie holds the secret, the database only its hash."""

    __tablename__ = "dashboard_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()


class PrivacyConsent(Base):
    """A person accepted the privacy notice (PIPL: informed consent, a guardian's for a minor).

    One row per acceptance, so a new notice version is asked for again and the history stays.
    """

    __tablename__ = "privacy_consent"
    __table_args__ = (UniqueConstraint("person_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("platform_account.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(Integer)
    accepted_at: Mapped[datetime] = mapped_column()


class ErasureStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    REFUSED = "refused"
    CANCELLED = "cancelled"


class ErasureRequest(Base):
    """A person asked the school to erase their data (/delete_me); an admin decides.

    The row outlives the erasure (person_id is set null): it is the record that it was done.
    """

    __tablename__ = "erasure_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("platform_account.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=ErasureStatus.PENDING.value)
    requested_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column()
    decided_by_person_id: Mapped[int | None] = mapped_column(ForeignKey("person.id", ondelete="SET NULL"))
    # What was kept and why (counts only, e.g. {"agreements": 2}): never names or free text.
    kept: Mapped[dict[str, Any]] = mapped_column(default=dict)
