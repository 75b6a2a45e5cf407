"""Sign-in to the committee dashboard: one-time links and browser sessions.

A link is `<id>.<secret>.<signature>`: the signature (HMAC under the deployment's secret, which
is not in the database) lets us refuse a forged link without a query; only a SHA-256 of the secret
is stored, so a database dump gives no working link. A link works once (a conditional UPDATE: two
browsers racing with the same link cannot both win) and for `LINK_TTL`.

A session is the same idea: the cookie holds a random secret, the database only its hash. It
ends after `IDLE_LIMIT` without a request, after `MAX_AGE` in any case, on sign-out, or as soon
as the person no longer holds the committee or admin role in that school (checked on every
request, from the database).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit, authz
from storage.authz import Action
from storage.models import (
    DashboardLink,
    DashboardSession,
    Person,
    PersonRole,
    School,
    SurveyInvitation,
    SurveyResponse,
)

log = logging.getLogger(__name__)

LINK_TTL = timedelta(minutes=15)
IDLE_LIMIT = timedelta(minutes=30)
MAX_AGE = timedelta(hours=12)  # even an active session signs in again after this
# last_seen_at is written at most this often: a page with ten charts makes one write, not eleven.
SEEN_GRANULARITY = timedelta(seconds=60)
ROLES = tuple(sorted(r.value for r in authz.RULES[Action.VIEW_DASHBOARD].roles))  # the table decides

_LINK_PURPOSE = b"dashboard-link|"
_CSRF_PURPOSE = b"dashboard-csrf|"
_SECRET_BYTES = 24  # 192 bits before base64
_MAX_TOKEN = 200


@dataclass(frozen=True)
class SignIn:
    """A redeemed link: `cookie` is the new session's secret, given to the browser only."""

    school_id: int
    person_id: int
    session_id: int
    cookie: str


@dataclass(frozen=True)
class Refused:
    """Why a link did not sign anyone in: "invalid" (malformed or forged), "expired", "used" or
    "not_allowed" (the person no longer has the role)."""

    reason: str


@dataclass(frozen=True)
class Viewer:
    """Who a dashboard request is from, re-read from the database for this request."""

    session_id: int
    school_id: int
    person_id: int
    person_name: str
    school_name: str
    school_timezone: str
    roles: frozenset[str]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _sign(secret_key: bytes, body: str) -> str:
    return hmac.new(secret_key, _LINK_PURPOSE + body.encode(), hashlib.sha256).hexdigest()


def csrf_token(secret_key: bytes, cookie: str) -> str:
    """The form token of a session: bound to its cookie secret, so it needs no storage and a
    token seen by one browser is worthless for another."""
    return hmac.new(secret_key, _CSRF_PURPOSE + cookie.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret_key: bytes, cookie: str, given: str) -> bool:
    return hmac.compare_digest(csrf_token(secret_key, cookie).encode(), given.encode())


async def has_dashboard_role(session: AsyncSession, school_id: int, person_id: int) -> bool:
    """True while the person is on this school's roster with the committee or admin role."""
    found = await session.scalar(
        select(PersonRole.id)
        .join(Person, Person.id == PersonRole.person_id)
        .where(
            PersonRole.person_id == person_id,
            PersonRole.school_id == school_id,
            Person.school_id == school_id,
            PersonRole.role.in_(ROLES),
        )
        .limit(1)
    )
    return found is not None


async def eligible_person(session: AsyncSession, person_ids: list[int]) -> Person | None:
    """The first of these people who may use the dashboard (committee or admin of their school)."""
    if not person_ids:
        return None
    return await session.scalar(
        select(Person)
        .join(PersonRole, PersonRole.person_id == Person.id)
        .where(
            Person.id.in_(person_ids),
            PersonRole.school_id == Person.school_id,
            PersonRole.role.in_(ROLES),
        )
        .order_by(Person.id)
        .limit(1)
    )


async def issue_link(
    session: AsyncSession, school_id: int, person_id: int, secret_key: bytes, now: datetime
) -> str:
    """A new one-time sign-in token for this person; the caller checked the role."""
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    link = DashboardLink(
        school_id=school_id, person_id=person_id, secret_hash=_sha256(secret), expires_at=now + LINK_TTL
    )
    session.add(link)
    await session.flush()
    body = f"{link.id}.{secret}"
    await audit.record(
        session,
        "dashboard.link_issued",
        school_id=school_id,
        actor_person_id=person_id,
        target_type="dashboard_link",
        target_id=link.id,
    )
    return f"{body}.{_sign(secret_key, body)}"


def _parse(token: str, secret_key: bytes) -> tuple[int, str] | None:
    """(link id, secret) of a well-formed token with a valid signature, else None."""
    if not token or len(token) > _MAX_TOKEN:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    link_id, secret, signature = parts
    if not link_id.isascii() or not link_id.isdigit() or len(link_id) > 12 or not secret:
        return None
    if not hmac.compare_digest(_sign(secret_key, f"{link_id}.{secret}").encode(), signature.encode()):
        return None
    return int(link_id), secret


async def redeem_link(
    session: AsyncSession, token: str, secret_key: bytes, now: datetime
) -> SignIn | Refused:
    """Turn a link into a session, once. Refusals of genuine links are audited (ids and reason)."""
    parsed = _parse(token, secret_key)
    link = await session.get(DashboardLink, parsed[0]) if parsed else None
    if parsed is None or link is None or not hmac.compare_digest(link.secret_hash, _sha256(parsed[1])):
        # Not ours: logged, not written (anyone can send garbage; it must cost us no writes).
        log.info("dashboard link refused: invalid")
        return Refused("invalid")
    won = await session.execute(
        update(DashboardLink)
        .where(
            DashboardLink.id == link.id,
            DashboardLink.used_at.is_(None),
            DashboardLink.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(link)
        reason = "used" if link.used_at is not None else "expired"
        return await _refuse(session, link, reason)
    if not await has_dashboard_role(session, link.school_id, link.person_id):
        return await _refuse(session, link, "not_allowed")
    cookie = secrets.token_urlsafe(32)
    row = DashboardSession(
        school_id=link.school_id,
        person_id=link.person_id,
        secret_hash=_sha256(cookie),
        created_at=now,
        last_seen_at=now,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        "dashboard.sign_in",
        school_id=link.school_id,
        actor_person_id=link.person_id,
        target_type="dashboard_session",
        target_id=row.id,
        link_id=link.id,
    )
    return SignIn(link.school_id, link.person_id, row.id, cookie)


async def _refuse(session: AsyncSession, link: DashboardLink, reason: str) -> Refused:
    await audit.record(
        session,
        "dashboard.link_refused",
        school_id=link.school_id,
        actor_person_id=link.person_id,
        target_type="dashboard_link",
        target_id=link.id,
        reason=reason,
    )
    return Refused(reason)


async def session_for(session: AsyncSession, cookie: str | None, now: datetime) -> Viewer | None:
    """The signed-in person behind a cookie, or None. Ends the session when it has been idle too
    long, is too old, or its person lost the role; otherwise slides `last_seen_at`."""
    if not cookie or len(cookie) > _MAX_TOKEN:
        return None
    row = await session.scalar(
        select(DashboardSession).where(
            DashboardSession.secret_hash == _sha256(cookie), DashboardSession.ended_at.is_(None)
        )
    )
    if row is None:
        return None
    stale = now - row.last_seen_at > IDLE_LIMIT or now - row.created_at > MAX_AGE
    role_lost = not stale and not await has_dashboard_role(session, row.school_id, row.person_id)
    if stale or role_lost:
        row.ended_at = now
        await session.flush()
        if role_lost:
            await authz.refused_person(
                session, row.school_id, row.person_id, Action.VIEW_DASHBOARD, reason="role_lost"
            )
        return None
    if now - row.last_seen_at >= SEEN_GRANULARITY:
        row.last_seen_at = now
        await session.flush()
    person = await session.get(Person, row.person_id)
    school = await session.get(School, row.school_id)
    assert person is not None and school is not None  # foreign keys cascade: the session would be gone
    roles = frozenset(
        await session.scalars(
            select(PersonRole.role).where(
                PersonRole.person_id == row.person_id, PersonRole.school_id == row.school_id
            )
        )
    )
    return Viewer(row.id, row.school_id, row.person_id, person.name, school.name, school.timezone, roles)


async def end_session(session: AsyncSession, cookie: str | None, now: datetime) -> bool:
    """Sign out: the cookie no longer opens anything, even if the browser keeps it."""
    if not cookie or len(cookie) > _MAX_TOKEN:
        return False
    result = await session.execute(
        update(DashboardSession)
        .where(DashboardSession.secret_hash == _sha256(cookie), DashboardSession.ended_at.is_(None))
        .values(ended_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def survey_counts(session: AsyncSession, school_id: int) -> dict[int, tuple[int, int]]:
    """(invited, respondents) per survey of a school, counted the way the results count them: the
    overview shows every survey's rate without computing each one's full results."""
    invited = await session.execute(
        select(SurveyInvitation.survey_id, func.count())
        .where(SurveyInvitation.school_id == school_id)
        .group_by(SurveyInvitation.survey_id)
    )
    answered = await session.execute(
        select(SurveyResponse.survey_id, func.count())
        .where(SurveyResponse.school_id == school_id, SurveyResponse.submitted.is_(True))
        .group_by(SurveyResponse.survey_id)
    )
    counts: dict[int, tuple[int, int]] = {sid: (n, 0) for sid, n in invited}
    for sid, n in answered:
        counts[sid] = (counts.get(sid, (0, 0))[0], n)
    return counts
