"""Consent to the privacy notice: asked at binding, and again whenever the notice's version changes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.accounts import Identity
from storage.models import Person, PrivacyConsent

# Bump when the notice (messages/templates/*/privacy_notice.txt) changes what is collected, why,
# for how long or who sees it: everyone is asked again on their next message.
PRIVACY_NOTICE_VERSION = 1


async def missing(session: AsyncSession, person_ids: Iterable[int], version: int | None = None) -> list[int]:
    """The people among these who have not accepted this version (default: the current one)."""
    version = PRIVACY_NOTICE_VERSION if version is None else version
    ids = sorted(set(person_ids))
    if not ids:
        return []
    accepted = set(
        await session.scalars(
            select(PrivacyConsent.person_id).where(
                PrivacyConsent.person_id.in_(ids), PrivacyConsent.version == version
            )
        )
    )
    return [i for i in ids if i not in accepted]


def accepted_by(identity: Identity, version: int | None = None) -> bool:
    """Whether every person this account speaks for accepted this version (default: the current
    one), from the identity loaded for the event: no query of its own on the hot path."""
    version = PRIVACY_NOTICE_VERSION if version is None else version
    return all((p.id, version) in identity.accepted for p in identity.people)


async def accept(
    session: AsyncSession,
    person_ids: Iterable[int],
    account_id: int | None,
    now: datetime,
    version: int | None = None,
) -> int:
    """Record that these people accepted the notice through this account; returns rows added.

    Consent belongs to the person (a guardian, for a minor), so another device of the same person
    is not asked again.
    """
    version = PRIVACY_NOTICE_VERSION if version is None else version
    added = 0
    for person_id in await missing(session, person_ids, version):
        person = await session.get(Person, person_id)
        if person is None:
            continue
        session.add(
            PrivacyConsent(
                school_id=person.school_id,
                person_id=person_id,
                account_id=account_id,
                version=version,
                accepted_at=now,
            )
        )
        await audit.record(
            session,
            "privacy.accepted",
            school_id=person.school_id,
            actor_person_id=person_id,
            actor_account_id=account_id,
            target_type="person",
            target_id=person_id,
            version=version,
        )
        added += 1
    await session.flush()
    return added
