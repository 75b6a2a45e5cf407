"""The audit log: who did what, when. Ids and short codes only, never personal text."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog


async def record(
    session: AsyncSession,
    action: str,
    *,
    school_id: int | None = None,
    actor_person_id: int | None = None,
    actor_account_id: int | None = None,
    target_type: str | None = None,
    target_id: int | None = None,
    **detail: Any,
) -> AuditLog:
    entry = AuditLog(
        action=action,
        school_id=school_id,
        actor_person_id=actor_person_id,
        actor_account_id=actor_account_id,
        target_type=target_type,
        target_id=target_id,
        detail=detail,
    )
    session.add(entry)
    await session.flush()
    return entry


async def entries(session: AsyncSession, action: str | None = None) -> list[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id)
    if action:
        query = query.where(AuditLog.action == action)
    return list(await session.scalars(query))
