"""Update ids already handled: Telegram re-delivers after a timeout or a crash."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ProcessedUpdate


async def claim_update(session: AsyncSession, platform: str, update_id: int) -> bool:
    """Record the update in the caller's transaction; False when it was already processed.

    The row commits together with the update's effects, so a crash before the commit lets the
    re-delivery run again, and a re-delivery after the commit is skipped.
    """
    try:
        async with session.begin_nested():
            session.add(ProcessedUpdate(platform=platform, update_id=update_id))
    except IntegrityError:
        return False
    return True
