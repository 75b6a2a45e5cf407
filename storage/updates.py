"""Update ids already handled: Telegram re-delivers after a timeout or a crash."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.inserts import insert_new
from storage.models import ProcessedUpdate

_KEY = ("platform", "update_id")


async def claim_update(session: AsyncSession, platform: str, update_id: int) -> bool:
    """Record the update in the caller's transaction; False when it was already processed.

    The row commits together with the update's effects, so a crash before the commit lets the
    re-delivery run again, and a re-delivery after the commit is skipped. A copy being processed
    at the same moment (Telegram re-delivered while we were slow) waits for the first one's
    commit and is then skipped, or takes over if the first one rolled back.

    `INSERT ... ON CONFLICT DO NOTHING`, not a savepoint: with SQLite's Python driver a savepoint
    that is the first write of a transaction opens the transaction itself, and releasing it
    commits: the id would be committed before the update's effects, and a crash in between
    would lose the update (its re-delivery skipped as done).
    """
    return await insert_new(
        session, ProcessedUpdate.__table__, _KEY, {"platform": platform, "update_id": update_id}
    )
