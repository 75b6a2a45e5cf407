"""The outbox: messages to other people, committed with their cause and sent by the sender."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import Lane, Outbox, OutboxStatus, PlatformAccount

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


async def retry_later(session: AsyncSession, row: Outbox, error: str, after: float | None = None) -> None:
    """Back off exponentially (or as the platform asked); give up after MAX_ATTEMPTS."""
    now = utcnow()
    row.attempts += 1
    row.error = error[:1000]
    row.last_attempt_at = now
    if row.attempts >= MAX_ATTEMPTS:
        row.status = OutboxStatus.FAILED.value
    else:
        delay = after if after is not None else min(2**row.attempts, 300)
        row.not_before = now + timedelta(seconds=delay)
    await session.flush()


async def wait_for_recipient(session: AsyncSession, row: Outbox, seconds: float = 60) -> None:
    """The recipient has no open connection (a closed web chat): not a failure, no attempt used.

    The row waits; `expedite` makes it due as soon as the recipient is back.
    """
    now = utcnow()
    row.last_attempt_at = now
    row.not_before = now + timedelta(seconds=seconds)
    await session.flush()


async def expedite(session: AsyncSession, platform: str, chat_id: str) -> None:
    """Rows of this chat that were tried and are waiting become due now (the recipient came back).

    Rows never tried keep their time: a message scheduled for later stays scheduled.
    """
    now = utcnow()
    await session.execute(
        update(Outbox)
        .where(
            Outbox.account_id.in_(
                select(PlatformAccount.id).where(
                    PlatformAccount.platform == platform, PlatformAccount.chat_id == chat_id
                )
            ),
            Outbox.status == OutboxStatus.PENDING.value,
            Outbox.last_attempt_at.is_not(None),
            Outbox.not_before > now,
        )
        .values(not_before=now)
    )


async def pending_for(session: AsyncSession, account_id: int) -> list[Outbox]:
    return list(
        await session.scalars(
            select(Outbox)
            .where(Outbox.account_id == account_id, Outbox.status == OutboxStatus.PENDING.value)
            .order_by(Outbox.id)
        )
    )
