"""Update ids already handled: Telegram re-delivers after a timeout or a crash."""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ProcessedUpdate

# Built once: this runs for every update (see storage/accounts.py on the hot path). On the table,
# not the mapped class: with parameters given apart, the ORM would take it for a bulk insert.
_CLAIM = {
    name: insert(ProcessedUpdate.__table__)
    .values(platform=bindparam("platform"), update_id=bindparam("update_id"))
    .on_conflict_do_nothing(index_elements=["platform", "update_id"])
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


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
    statement = _CLAIM.get(session.get_bind().dialect.name)
    if statement is not None:
        result = await session.execute(statement, {"platform": platform, "update_id": update_id})
        return bool(result.rowcount)  # type: ignore[attr-defined]
    try:
        async with session.begin_nested():
            session.add(ProcessedUpdate(platform=platform, update_id=update_id))
    except IntegrityError:
        return False
    return True
