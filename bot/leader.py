"""Leader duties: work exactly one process of a deployment may do (the outbox sender, the scheduler).

For now: the single process is the leader. The delivery issue adds election by a PostgreSQL
advisory lock, with take-over when the leader dies.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


class Duty(Protocol):
    """Something only the leader runs; started when leadership is won, stopped when it is lost."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Leadership:
    def __init__(self, engine: AsyncEngine, duties: list[Duty]) -> None:
        self.engine = engine
        self.duties = duties
        self.is_leader = False

    async def start(self) -> None:
        for duty in self.duties:
            await duty.start()
        self.is_leader = True

    async def stop(self) -> None:
        for duty in reversed(self.duties):
            try:
                await duty.stop()
            except Exception:
                log.exception("stopping %s failed", type(duty).__name__)
        self.is_leader = False
