"""What the enrollment flows show in common: the fee bill, and the buttons reviewers get."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

import messages
from handlers.dialog import Button, ButtonsFor, Context, notify_person
from storage import enrollment, groups
from storage.clock import utcnow
from storage.enrollment import Options
from storage.fees import FeeBill, FeeStandard, Waiver, monthly_bill
from storage.models import (
    Application,
    ApplicationStatus,
    School,
    SchoolClass,
    ServiceGroup,
    Student,
    TermsVersion,
)


def next_month(timezone: str) -> date:
    """The month a new application's fee is shown for: the next calendar month at the school."""
    today = utcnow().astimezone(ZoneInfo(timezone)).date()
    return date(today.year + (today.month == 12), today.month % 12 + 1, 1)


def bill_for(ctx: Context, terms: TermsVersion, options: Options, waiver: Waiver) -> FeeBill:
    timezone = ctx.identity.school.timezone if ctx.identity.school else "Asia/Shanghai"
    return monthly_bill(
        FeeStandard.from_terms(terms.content["fees"]),
        next_month(timezone),
        options.weekdays,
        noon_care=options.noon_care,
        lunch=options.lunch,
        waiver=waiver,
    )


def review_buttons(app: Application) -> ButtonsFor:
    """The reviewer's buttons, labelled in the reviewer's language, for the step the application is at."""

    def build(locale: str) -> list[list[Button]]:
        def label(key: str) -> str:
            return messages.label(key, locale)

        if app.status == ApplicationStatus.SUBMITTED.value:
            rows = [
                [
                    Button(label("review.approve"), f"r:ok:{app.id}"),
                    Button(label("review.reject"), f"r:no:{app.id}"),
                ]
            ]
            if app.priority_claimed or app.waiver_requested:
                rows.insert(1, [Button(label("review.approve_unconfirmed"), f"r:ou:{app.id}")])
            return rows
        if app.status == ApplicationStatus.CLASS_APPROVED.value:
            rows = [
                [
                    Button(label("review.approve"), f"r:sa:{app.id}"),
                    Button(label("review.reject"), f"r:sr:{app.id}"),
                ]
            ]
            if app.waiver == Waiver.PENDING.value:
                rows.insert(1, [Button(label("review.approve_no_waiver"), f"r:sw:{app.id}")])
            return rows
        return []

    return build


async def application_facts(session: AsyncSession, app: Application) -> dict[str, Any]:
    """Everything a message about an application names: child, class, group, room, staff, position."""
    student = await session.get(Student, app.student_id)
    cls = await session.get(SchoolClass, student.class_id) if student else None
    group = await session.get(ServiceGroup, app.group_id) if app.group_id else None
    staff = (await groups.staff_on_duty(session, [group.id]))[group.id] if group else []
    school = await session.get(School, app.school_id)
    deadline = ""
    if app.offer_expires_at is not None and school is not None:
        deadline = app.offer_expires_at.astimezone(ZoneInfo(school.timezone)).strftime("%Y-%m-%d %H:%M")
    return {
        "deadline": deadline,
        "app": app,
        "child": student.name if student else "",
        "class_name": cls.name if cls else "",
        "group": group,
        "staff": [p.name for p in staff],
        "position": await enrollment.waiting_position(session, app),
    }


def sign_buttons(app: Application) -> ButtonsFor:
    """ "Read and sign the agreement", for a placed child's guardians (flow in handlers/agreement.py)."""

    def build(locale: str) -> list[list[Button]]:
        return [[Button(messages.label("agreement.read", locale), f"g:r:{app.id}")]]

    return build


def offer_buttons(app: Application) -> ButtonsFor:
    def build(locale: str) -> list[list[Button]]:
        return [
            [
                Button(messages.label("offer.accept", locale), f"o:y:{app.id}"),
                Button(messages.label("offer.decline", locale), f"o:n:{app.id}"),
            ]
        ]

    return build


async def tell_guardians(
    session: AsyncSession,
    app: Application,
    template: str,
    buttons: ButtonsFor | None = None,
    **extra: Any,
) -> None:
    """Every guardian of the child, in their own language, through the outbox."""
    facts = {**await application_facts(session, app), **extra}
    for guardian in await enrollment.guardians_of(session, app.student_id):
        await notify_person(session, guardian, template, buttons=buttons, school_id=app.school_id, **facts)


async def tell_offers(ctx: Context, offers: list[Application]) -> None:
    """Each offered child's guardians get the offer with accept / decline buttons."""
    for app in offers:
        await tell_guardians(ctx.session, app, "offer_made", offer_buttons(app))
