"""The outbox: messages to other people, committed with their cause and sent by the sender."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import Lane, Outbox, OutboxStatus

LANE_ORDER = case(
    {Lane.SAFETY.value: 0, Lane.INTERACTIVE.value: 1, Lane.BULK.value: 2},
    value=Outbox.lane,
    else_=3,
)
MAX_ATTEMPTS = 8


async def enqueue(
    session: AsyncSession,
    account_id: int,
    payload: dict[str, Any],
    *,
    lane: Lane = Lane.INTERACTIVE,
    school_id: int | None = None,
    not_before: datetime | None = None,
) -> Outbox:
    row = Outbox(
        account_id=account_id,
        payload=payload,
        lane=lane.value,
        school_id=school_id,
        status=OutboxStatus.PENDING.value,
        not_before=not_before or utcnow(),
        attempts=0,
    )
    session.add(row)
    await session.flush()
    return row


async def due(session: AsyncSession, limit: int = 50, now: datetime | None = None) -> list[Outbox]:
    """Pending rows whose time has come, safety first, oldest first within a lane."""
    now = now or utcnow()
    query = (
        select(Outbox)
        .where(Outbox.status == OutboxStatus.PENDING.value, Outbox.not_before <= now)
        .order_by(LANE_ORDER, Outbox.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(await session.scalars(query))


async def mark_sent(session: AsyncSession, outbox_id: int) -> None:
    await session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id)
        .values(status=OutboxStatus.SENT.value, sent_at=utcnow(), error=None)
    )


async def mark_failed(session: AsyncSession, outbox_id: int, error: str) -> None:
    await session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id)
        .values(status=OutboxStatus.FAILED.value, error=error[:1000])
    )


async def retry_later(session: AsyncSession, row: Outbox, error: str) -> None:
    """Back off exponentially; give up after MAX_ATTEMPTS."""
    row.attempts += 1
    row.error = error[:1000]
    if row.attempts >= MAX_ATTEMPTS:
        row.status = OutboxStatus.FAILED.value
    else:
        row.not_before = utcnow() + timedelta(seconds=min(2**row.attempts, 300))
    await session.flush()


async def pending_for(session: AsyncSession, account_id: int) -> list[Outbox]:
    return list(
        await session.scalars(
            select(Outbox)
            .where(Outbox.account_id == account_id, Outbox.status == OutboxStatus.PENDING.value)
            .order_by(Outbox.id)
        )
    )
