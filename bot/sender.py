"""The outbox sender: a leader duty that drains the outbox through each recipient's channel.

It claims due rows for a lease (safety and interactive rows every `poll_interval`, bulk rows when
its buffer runs low), keeps them in per-platform priority queues, and starts each send as soon as
that platform's limits allow, safety first. Every outcome is committed right after the platform
answers, one row at a time, so a crash can repeat at most the messages whose answer had arrived
but whose commit had not. docs/delivery.md tells the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels import Channel, Delivery, Status
from bot.ratelimit import UNLIMITED, Limiter, Limits
from handlers.dialog import Reply
from storage import outbox
from storage.models import Lane
from storage.outbox import Claim

log = logging.getLogger(__name__)

URGENT_LANES = (Lane.SAFETY, Lane.INTERACTIVE)
URGENT_BATCH = 100  # urgent rows held at once
BULK_IDLE_POLL = 1.0  # with no bulk rows due, look for new ones this often (urgent lanes: every poll)


def new_owner() -> str:
    """A name for this sender in `outbox.claimed_by`: host, process id and a random tail."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class SenderStats:
    """Counters since start, for logs, benchmarks and (later) /metrics."""

    sent: int = 0
    failed: int = 0
    unreachable: int = 0
    rerouted: int = 0
    retried: int = 0
    rate_limited: int = 0  # 429s the platform answered
    claimed: int = 0
    # Seconds from a platform's "accepted" to the commit of "sent": the only moments in which a
    # crash sends a message twice. Recent values only.
    confirm_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))


class Sender:
    """Sends outbox rows; started and stopped by the leadership (see bot/leader.py)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        channels: dict[str, Channel],
        *,
        limits: Mapping[str, Limits] | None = None,
        concurrency: int = 16,
        poll_interval: float = 0.15,
        lease: float = 10.0,
        retry_base: float = 2.0,
        owner: str | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.channels = channels
        self.limits = dict(limits or {})
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease = lease
        self.retry_base = retry_base
        self.owner = owner or new_owner()
        self.stats = SenderStats()
        rates = [lim.per_bot.count / lim.per_bot.seconds for lim in self.limits.values() if lim.per_bot]
        fastest = max(rates, default=100.0)
        # About two seconds of the fastest platform's rate: enough to never run dry between
        # claims, little enough that a dead sender's rows are few.
        self.bulk_batch = max(50, min(2000, int(2 * fastest)))
        self._limiters: dict[str, Limiter] = {}
        self._queues: dict[str, list[tuple[tuple[int, int], Claim]]] = {}
        self._held: set[int] = set()
        self._inflight: dict[int, asyncio.Task[None]] = {}  # from start to recorded outcome
        self._sending = 0  # of those, waiting for the platform's answer (`concurrency` at most)
        self._busy: set[tuple[str, str]] = set()  # (platform, chat) with a send on its way
        self._kick = asyncio.Event()  # the dispatcher: a send finished, rows came, stop
        self._wake_claims = asyncio.Event()  # the claimer: rows were queued here, or stop
        self._refill_now = True
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_grace = 10.0
        self._renewed_at = 0.0
        bind = sessionmaker.kw.get("bind")
        # SQLite takes one writer at a time and makes the others sleep and retry (up to 100 ms
        # a try): queueing our own transactions here instead keeps each commit to milliseconds.
        self._sqlite = bind is not None and bind.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()
        self._to_confirm: list[tuple[int, float, asyncio.Future[bool]]] = []
        self._confirming = False

    # -- life cycle -------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something was queued in this process: look now instead of at the next poll."""
        self._refill_now = True
        self._wake_claims.set()

    async def start(self) -> None:
        self._stopping = False
        self._refill_now = True
        self._renewed_at = time.monotonic()
        self._task = asyncio.create_task(self.run(), name="outbox-sender")
        log.info("outbox sender %s started", self.owner)

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the messages in hand, give back the rest, then stop.

        Cancelling a send in flight could leave a message accepted by the platform but not
        recorded (it would be sent again), and cancelling a database call can leave a driver
        thread waiting (aiosqlite): so wait up to `grace` first.
        """
        self._stopping = True
        self._stop_grace = grace
        self._kick.set()
        self._wake_claims.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace + 5)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        log.info("outbox sender %s stopped: %s", self.owner, self._summary())

    def _summary(self) -> str:
        s = self.stats
        return (
            f"sent={s.sent} failed={s.failed} unreachable={s.unreachable} rerouted={s.rerouted} "
            f"retried={s.retried} rate_limited={s.rate_limited}"
        )

    async def run(self) -> None:
        """Dispatch sends as the limits allow; claiming runs beside it, so a slow query never
        holds back a send that is ready."""
        claiming = asyncio.create_task(self._claim_loop(), name="outbox-claims")
        try:
            while not self._stopping:
                self._kick.clear()
                wait = self._dispatch()
                timeout = self.poll_interval if wait is None else min(wait, self.poll_interval)
                if timeout > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._kick.wait()
        finally:
            self._wake_claims.set()
            await asyncio.wait({claiming}, timeout=self._stop_grace)
            if not claiming.done():
                claiming.cancel()
                await asyncio.wait({claiming})
            await self._wind_down()

    async def _claim_loop(self) -> None:
        """Claim urgent rows every poll (or at once on `wake`), bulk rows when the buffer runs
        low, and renew the leases of what is held."""
        loop = asyncio.get_running_loop()
        next_poll = next_renewal = next_bulk = loop.time()
        while not self._stopping:
            self._wake_claims.clear()
            now = loop.time()
            if self._refill_now or now >= next_poll:
                with_bulk = self._refill_now or now >= next_bulk
                self._refill_now = False
                found_bulk = await self._guarded(self._refill(with_bulk), "claiming rows")
                self._kick.set()
                next_poll = loop.time() + self.poll_interval
                if with_bulk:
                    next_bulk = loop.time() + (0 if found_bulk else BULK_IDLE_POLL)
            if now >= next_renewal:
                await self._guarded(self._renew(), "renewing leases")
                next_renewal = loop.time() + self.lease / 4
            timeout = min(next_poll, next_renewal) - loop.time()
            if timeout > 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake_claims.wait()

    async def _guarded(self, work: Awaitable[Any], what: str) -> Any:
        """A database hiccup must not stop the sender: log it and try again next round."""
        try:
            return await work
        except Exception:
            log.exception("outbox sender: %s failed; retrying", what)
            return None

    async def _wind_down(self) -> None:
        """Wait for the sends in flight (up to the grace), then give back every row not sent."""
        cut_short: set[int] = set()
        if self._inflight:
            _, pending = await asyncio.wait(list(self._inflight.values()), timeout=self._stop_grace)
            cut_short = {claim_id for claim_id, task in self._inflight.items() if task in pending}
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if cut_short:
            # Tasks cancelled before they ran never counted themselves out: start the counts anew.
            self._limiters.clear()
            self._busy.clear()
            self._sending = 0
        # A send cut short may have reached the platform: its row keeps its lease, so it is tried
        # again only when that runs out, not at once.
        unsent = self._held - cut_short
        self._queues.clear()
        self._held.clear()
        if unsent:
            try:
                async with self._transaction() as session:
                    await outbox.release(session, self.owner, unsent)
            except Exception:
                log.exception("outbox sender: could not give back %s rows (leases will run out)", len(unsent))

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """One short transaction (on SQLite, one at a time from this sender)."""
        async with (
            self._write_lock if self._sqlite else contextlib.nullcontext(),
            self.sessionmaker.begin() as session,
        ):
            yield session

    # -- claiming ---------------------------------------------------------------------------------

    async def _refill(self, with_bulk: bool) -> bool:
        """Claim due urgent rows, and bulk rows when the buffer runs low; True if bulk rows came."""
        platforms = list(self.channels)
        if not platforms:
            return False
        urgent = bulk = 0
        for queue in self._queues.values():
            for (rank, _), _claim in queue:
                if rank < 2:
                    urgent += 1
                else:
                    bulk += 1
        bulk_wanted = self.bulk_batch - bulk if with_bulk and bulk <= self.bulk_batch // 2 else 0
        async with self._transaction() as session:
            claims = await outbox.claim(
                session,
                self.owner,
                lanes=URGENT_LANES,
                platforms=platforms,
                limit=URGENT_BATCH - urgent,
                lease=self.lease,
            )
            bulk_claims = await outbox.claim(
                session,
                self.owner,
                lanes=(Lane.BULK,),
                platforms=platforms,
                limit=bulk_wanted,
                lease=self.lease,
            )
        for claim in claims + bulk_claims:
            self._queue(claim)
        self.stats.claimed += len(claims) + len(bulk_claims)
        if claims or bulk_claims:
            log.debug("outbox sender: claimed %s urgent and %s bulk rows", len(claims), len(bulk_claims))
        return bulk_wanted == 0 or bool(bulk_claims)

    def _queue(self, claim: Claim) -> None:
        self._held.add(claim.id)
        heapq.heappush(self._queues.setdefault(claim.platform, []), (claim.rank, claim))

    async def _renew(self) -> None:
        """Extend the leases of the rows held; drop any another sender took after ours ran out."""
        asked_at = time.monotonic()
        async with self._transaction() as session:
            kept = await outbox.renew(session, self.owner, self.lease)
        self._renewed_at = asked_at
        lost = self._held - kept - set(self._inflight)
        if lost:
            log.warning("outbox sender: lost the lease of %s rows to another sender", len(lost))
            self._held -= lost
            for platform, queue in self._queues.items():
                self._queues[platform] = [entry for entry in queue if entry[1].id not in lost]
                heapq.heapify(self._queues[platform])

    # -- sending ----------------------------------------------------------------------------------

    def _limiter(self, platform: str) -> Limiter:
        limiter = self._limiters.get(platform)
        if limiter is None:
            limiter = self._limiters[platform] = Limiter(self.limits.get(platform, UNLIMITED))
        return limiter

    def _dispatch(self) -> float | None:
        """Start every send the limits allow now, best first; returns seconds until another may be
        possible (None: only an answer or a new row can change that)."""
        if time.monotonic() - self._renewed_at > self.lease / 2:
            # Our leases may be running out (the database is unreachable): another sender could
            # take these rows, so start nothing until a renewal succeeds.
            return self.poll_interval
        soonest: float | None = None
        blocked: set[str] = set()
        # Commits may lag behind answers for a moment; bound those too, but apart from the sends.
        while self._sending < self.concurrency and len(self._inflight) < 4 * self.concurrency:
            best: tuple[tuple[int, int], str] | None = None
            for platform, queue in self._queues.items():
                if queue and platform not in blocked and (best is None or queue[0][0] < best[0]):
                    best = (queue[0][0], platform)
            if best is None:
                break
            platform = best[1]
            queue = self._queues[platform]
            limiter = self._limiter(platform)
            wait = limiter.bot_delay()
            if wait != 0:
                blocked.add(platform)
                soonest = _soonest(soonest, wait)
                continue
            aside: list[tuple[tuple[int, int], Claim]] = []
            chosen: Claim | None = None
            while queue:
                entry = heapq.heappop(queue)
                claim = entry[1]
                if claim.unreachable:
                    chosen = claim
                    break
                if (platform, claim.chat_id) in self._busy:
                    aside.append(entry)  # one at a time per chat, so a chat's messages keep their order
                    continue
                wait = limiter.chat_delay(claim.chat_id)
                if wait == 0:
                    chosen = claim
                    break
                aside.append(entry)
                soonest = _soonest(soonest, wait)
            for entry in aside:
                heapq.heappush(queue, entry)
            if chosen is None:
                blocked.add(platform)
                continue
            if chosen.unreachable:
                # Already known to be blocked: no call to the platform, straight to re-routing.
                result = Delivery(Status.UNREACHABLE, "account is marked unreachable")
                self._spawn(chosen, self._settle(chosen, result, time.monotonic()))
            else:
                limiter.start(chosen.chat_id)  # no await from the checks to here: they still hold
                self._busy.add((platform, chosen.chat_id))
                self._sending += 1
                self._spawn(chosen, self._deliver(chosen, limiter))
        return soonest

    def _spawn(self, claim: Claim, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            finally:
                self._inflight.pop(claim.id, None)
                self._kick.set()

        self._inflight[claim.id] = asyncio.create_task(run(), name=f"outbox-{claim.id}")

    async def _deliver(self, claim: Claim, limiter: Limiter) -> None:
        """One send (counted as started by `_dispatch`), then its outcome recorded."""
        channel = self.channels.get(claim.platform)
        chat = (claim.platform, claim.chat_id)
        try:
            if channel is None:
                result = Delivery(Status.RETRY, f"no {claim.platform} channel in this process")
            else:
                result = await channel.deliver(claim.chat_id, Reply.from_payload(claim.payload))
        except Exception as exc:  # a bug in an adapter must not stop the sender
            log.exception("delivery of outbox row %s failed", claim.id)
            result = Delivery(Status.RETRY, repr(exc))
        finally:
            limiter.finish(claim.chat_id)
            self._busy.discard(chat)
            self._sending -= 1
            self._kick.set()
        await self._settle(claim, result, time.monotonic())

    async def _settle(self, claim: Claim, result: Delivery, answered: float) -> None:
        """Record what happened to one row, in its own short transaction."""
        limiter = self._limiter(claim.platform)
        status = result.status
        if status is Status.RETRY and result.retry_after is not None:
            # Telegram's flood control is per bot: nothing goes to this platform until then, and
            # the row keeps its place (and its claim) in the queue.
            limiter.pause(result.retry_after)
            self.stats.rate_limited += 1
            log.warning(
                "%s asked to retry after %ss: pausing all sending there", claim.platform, result.retry_after
            )
            heapq.heappush(self._queues.setdefault(claim.platform, []), (claim.rank, claim))
            return
        self._held.discard(claim.id)
        if status is Status.SENT:
            limiter.succeeded()
            await self._record_sent(claim, answered)
        elif status is Status.RETRY:
            limiter.failed()
            self.stats.retried += 1

            async def retry(session: AsyncSession) -> None:
                if await outbox.retry_later(session, claim.id, result.error, base=self.retry_base):
                    log.error("outbox row %s failed for good after retries: %s", claim.id, result.error)

            await self._record(claim, retry)
        elif status is Status.OFFLINE:
            await self._record(claim, lambda s: outbox.wait_for_recipient(s, claim.id))
        elif status is Status.UNREACHABLE:
            limiter.succeeded()
            self.stats.unreachable += 1
            copies: list[Any] = []

            async def unreachable(session: AsyncSession) -> None:
                await outbox.mark_unreachable(session, claim.id, result.error or "unreachable")
                copies[:] = await outbox.reroute(session, claim.id)

            await self._record(claim, unreachable)
            if copies:
                self.stats.rerouted += len(copies)
                log.info("outbox row %s: unreachable, re-routed to %s other accounts", claim.id, len(copies))
                self.wake()
        else:
            limiter.succeeded()
            self.stats.failed += 1
            log.warning("outbox row %s refused by %s: %s", claim.id, claim.platform, result.error)
            await self._record(claim, lambda s: outbox.mark_failed(s, claim.id, result.error))

    async def _record(self, claim: Claim, work: Callable[[AsyncSession], Awaitable[None]]) -> None:
        """Commit an outcome other than "sent"; if that fails, the row's lease runs out and it is
        tried again, which is harmless for a row that was not sent."""
        try:
            async with self._transaction() as session:
                await work(session)
        except Exception:
            log.exception("outbox row %s: could not record the outcome", claim.id)

    async def _record_sent(self, claim: Claim, answered: float) -> None:
        """Commit "sent" as soon as the answer is here: until then a crash would send it again.

        Answers that arrive while a commit is under way go together in the next one (a group
        commit), so under load commits do not queue up behind each other and the window stays
        one commit long. Nothing waits to fill a batch.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._to_confirm.append((claim.id, answered, done))
        if not self._confirming:
            self._confirming = True
            try:
                while self._to_confirm:
                    batch, self._to_confirm = self._to_confirm, []
                    await self._confirm(batch)
            finally:
                self._confirming = False
                for _, _, waiting in self._to_confirm:  # only if cut short by cancellation
                    if not waiting.done():
                        waiting.set_result(False)
                self._to_confirm.clear()
        await done

    async def _confirm(self, batch: list[tuple[int, float, asyncio.Future[bool]]]) -> None:
        """One transaction marking these rows sent, retried through a database hiccup."""
        delay = 0.05
        deadline = min(answered for _, answered, _ in batch) + self.lease
        try:
            while True:
                try:
                    async with self._transaction() as session:
                        await outbox.mark_sent_many(session, [row_id for row_id, _, _ in batch])
                    break
                except Exception:
                    if time.monotonic() + delay > deadline:
                        log.exception("%s rows sent but not recorded: may be sent again", len(batch))
                        return
                    log.warning("recording %s rows as sent failed; retrying", len(batch), exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            now = time.monotonic()
            self.stats.sent += len(batch)
            self.stats.confirm_seconds.extend(now - answered for _, answered, _ in batch)
        finally:
            for _, _, done in batch:
                if not done.done():
                    done.set_result(True)


def _soonest(a: float | None, b: float | None) -> float | None:
    """The sooner of two waits; None means "until something happens" and loses to any number."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
