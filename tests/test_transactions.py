"""A transaction holds SQLite's write lock only while it runs: nothing else runs before its commit."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.models import ProcessedUpdate


async def test_a_transaction_commits_before_any_other_task_runs(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Another update ready to run when the first one's work is done must wait for its commit:
    on SQLite it would otherwise meet the first one's write lock and back off."""
    happened: list[str] = []
    event.listen(engine.sync_engine, "commit", lambda _conn: happened.append("commit"))
    async with sessionmaker.begin() as session:
        await session.execute(insert(ProcessedUpdate), {"platform": "test", "update_id": 1})
        asyncio.get_running_loop().call_soon(happened.append, "another task")
    await asyncio.sleep(0)
    assert happened == ["commit", "another task"]


async def test_an_error_still_rolls_back_and_frees_the_connection(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    for _ in range(30):  # more than the pool holds: a connection not given back would run out
        try:
            async with sessionmaker.begin() as session:
                await session.execute(insert(ProcessedUpdate), {"platform": "test", "update_id": 2})
                raise RuntimeError("the flow failed")
        except RuntimeError:
            pass
    async with sessionmaker.begin() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 0
