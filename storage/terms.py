"""Published service terms (主动公开): validated, versioned, immutable once published."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import School, TermsVersion

# 服务内容: homework, reading, sports, arts, science, clubs, and free help for struggling pupils.
# There is deliberately no "lesson" or 补课 type: the policy forbids teaching disguised as care.
ACTIVITY_TYPES = ("homework", "reading", "sports", "arts", "science", "clubs", "tutoring")
PRIORITY_GROUPS = ("disability", "left_behind", "migrant", "hardship")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAY_ORDER = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeSlot(_Strict):
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> TimeSlot:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ServiceHours(_Strict):
    weekdays: list[Weekday] = Field(min_length=1)
    afternoon: TimeSlot
    noon_care: TimeSlot | None = None
    lunch_offered: bool = False

    @field_validator("weekdays")
    @classmethod
    def _sorted_unique(cls, v: list[str]) -> list[str]:
        return sorted(set(v), key=WEEKDAY_ORDER.index)


class Activity(_Strict):
    type: str
    name: str = Field(min_length=1, max_length=60)
    description: str = Field(default="", max_length=500)

    @field_validator("type")
    @classmethod
    def _allowed(cls, v: str) -> str:
        if v not in ACTIVITY_TYPES:
            raise ValueError(
                f"activity type {v!r} is not allowed; use one of {', '.join(ACTIVITY_TYPES)} "
                "(teaching new lessons / 补课 is forbidden by the policy)"
            )
        return v


class Fees(_Strict):
    currency: str = "CNY"
    per_month: Decimal = Field(ge=0)
    per_session: Decimal = Field(ge=0)
    noon_care_per_month: Decimal | None = Field(default=None, ge=0)
    lunch_per_day: Decimal | None = Field(default=None, ge=0)
    basis: str = Field(default="", max_length=300)
    notes: str = Field(default="", max_length=1000)


class Waiver(_Strict):
    description: str = Field(min_length=1, max_length=500)
    evidence: str = Field(default="", max_length=300)


class PriorityGroup(_Strict):
    code: str
    name: str

    @field_validator("code")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in PRIORITY_GROUPS:
            raise ValueError(f"priority group {v!r} unknown; use one of {', '.join(PRIORITY_GROUPS)}")
        return v


class Contact(_Strict):
    name: str
    role: str = ""
    phone: str = ""


class Responsibilities(_Strict):
    """学校、家长依照协议落实各方责任: what each side undertakes in the service agreement."""

    school: list[str] = Field(min_length=1)
    parents: list[str] = Field(min_length=1)


class TermsContent(_Strict):
    """What a school publishes; examples/terms.yaml shows every field."""

    title: str = Field(min_length=1, max_length=100)
    school_year: str = Field(default="", max_length=40)
    effective_from: date | None = None
    summary: str = Field(default="", max_length=1000)
    service_hours: ServiceHours
    activities: list[Activity] = Field(min_length=1)
    safety_measures: list[str] = Field(min_length=1)
    fees: Fees
    waiver: Waiver
    priority_groups: list[PriorityGroup] = Field(default_factory=list)
    how_to_apply: str = Field(min_length=1, max_length=2000)
    how_to_withdraw: str = Field(min_length=1, max_length=2000)
    voluntary_statement: str = Field(min_length=1, max_length=1000)
    contacts: list[Contact] = Field(default_factory=list)
    pickup_rules: list[str] = Field(default_factory=list)
    responsibilities: Responsibilities | None = None


# What an agreement depends on: when any of these change, parents are asked to sign again.
AGREEMENT_FIELDS = ("service_hours", "fees", "waiver", "safety_measures", "pickup_rules", "responsibilities")


def canonical_json(content: dict[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def parse_terms(data: Any) -> TermsContent:
    """Validate terms as loaded from YAML; raises pydantic.ValidationError with field paths."""
    return TermsContent.model_validate(data)


async def publish_terms(
    session: AsyncSession, school: School, terms: TermsContent
) -> tuple[TermsVersion, bool]:
    """Store a new version; (version, False) when the content equals the latest one already."""
    content = terms.model_dump(mode="json")
    digest = hashlib.sha256(canonical_json(content).encode()).hexdigest()
    latest = await latest_terms(session, school.id)
    if latest is not None and latest.content_sha256 == digest:
        return latest, False
    number = (
        await session.scalar(
            select(func.max(TermsVersion.version)).where(TermsVersion.school_id == school.id)
        )
        or 0
    ) + 1
    if terms.effective_from:
        effective = datetime.combine(terms.effective_from, time(0), ZoneInfo(school.timezone))
    else:
        effective = utcnow()
    version = TermsVersion(
        school_id=school.id,
        version=number,
        content=content,
        content_sha256=digest,
        effective_from=effective,
    )
    session.add(version)
    await session.flush()
    return version, True


def effective_date(version: TermsVersion, school: School) -> date:
    """The day the version takes effect, in the school's time zone (stored as a UTC instant)."""
    return version.effective_from.astimezone(ZoneInfo(school.timezone)).date()


async def latest_terms(session: AsyncSession, school_id: int) -> TermsVersion | None:
    return await session.scalar(
        select(TermsVersion)
        .where(TermsVersion.school_id == school_id)
        .order_by(TermsVersion.version.desc())
        .limit(1)
    )


async def current_terms(session: AsyncSession, school_id: int) -> TermsVersion | None:
    """The version in force now; before any takes effect, the upcoming one."""
    in_force = await session.scalar(
        select(TermsVersion)
        .where(TermsVersion.school_id == school_id, TermsVersion.effective_from <= utcnow())
        .order_by(TermsVersion.version.desc())
        .limit(1)
    )
    return in_force or await latest_terms(session, school_id)


async def get_terms(session: AsyncSession, school_id: int, version: int) -> TermsVersion | None:
    return await session.scalar(
        select(TermsVersion).where(TermsVersion.school_id == school_id, TermsVersion.version == version)
    )


async def list_versions(session: AsyncSession, school_id: int) -> list[TermsVersion]:
    return list(
        await session.scalars(
            select(TermsVersion)
            .where(TermsVersion.school_id == school_id)
            .order_by(TermsVersion.version.desc())
        )
    )
