"""The audit log: who did what, when. Ids and short codes only, never personal text."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog

# On the table, not the mapped class: an entry is written and never read back in the same
# transaction, so the ORM's unit of work (and its RETURNING of the id) would be wasted CPU.
_INSERT = insert(AuditLog.__table__)


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
) -> None:
    await session.execute(
        _INSERT,
        {
            "action": action,
            "school_id": school_id,
            "actor_person_id": actor_person_id,
            "actor_account_id": actor_account_id,
            "target_type": target_type,
            "target_id": target_id,
            "detail": detail,
        },
    )


async def entries(session: AsyncSession, action: str | None = None) -> list[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id)
    if action:
        query = query.where(AuditLog.action == action)
    return list(await session.scalars(query))
