"""The outbox sender: drains pending rows through the channel of each recipient's platform.

Minimal for now (one process, lanes in priority order, retries with backoff); the delivery issue
adds rate limits per chat and per bot, leader election and crash-window guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Channel, Status
from handlers.dialog import Reply
from storage import outbox
from storage.clock import utcnow
from storage.models import PlatformAccount

log = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        channels: dict[str, Channel],
        interval: float = 1.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.channels = channels
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        """Something was queued: look now instead of at the next tick."""
        self._wake.set()

    async def drain_once(self, limit: int = 50) -> int:
        """Send what is due; returns how many rows were handled."""
        handled = 0
        async with self.sessionmaker.begin() as session:
            for row in await outbox.due(session, limit):
                account = await session.get(PlatformAccount, row.account_id)
                channel = self.channels.get(account.platform) if account else None
                if account is None or channel is None:
                    continue  # no adapter for this platform in this process: leave it pending
                try:
                    result = await channel.deliver(account.chat_id, Reply.from_payload(row.payload))
                except Exception as exc:  # a bug in an adapter must not stop the sender
                    log.exception("delivery of outbox row %s failed", row.id)
                    await outbox.retry_later(session, row, repr(exc))
                    continue
                handled += 1
                if result.status is Status.SENT:
                    await outbox.mark_sent(session, row.id)
                elif result.status is Status.UNREACHABLE:
                    account.unreachable_at = utcnow()
                    await outbox.mark_failed(session, row.id, result.error or "unreachable")
                elif result.status is Status.FAILED:
                    await outbox.mark_failed(session, row.id, result.error)
                elif result.status is Status.OFFLINE:
                    await outbox.wait_for_recipient(session, row)
                else:
                    await outbox.retry_later(session, row, result.error, result.retry_after)
        return handled

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.drain_once()
            except Exception:
                log.exception("outbox sender pass failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="outbox-sender")

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the message in hand, then stop; cancel only if that takes longer than `grace`.

        Cancelling in the middle of a database call can leave a driver thread waiting (aiosqlite),
        and a half-sent row is the one window where a message could go out twice.
        """
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
