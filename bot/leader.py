"""Leader duties: work exactly one process of a deployment may do (the outbox sender, the scheduler).

Every process serves inbound updates; one, the leader, also runs the duties. The leader is chosen
by a lock the operating system or the database drops when its holder dies:

- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`, keyed by the schema) taken on a
  dedicated connection that stays open. The leader re-checks it every `check_interval`; when the
  check fails (the connection died, the server restarted) leadership is lost and the duties stop.
  A standby tries the lock as often; when it wins, it waits two intervals more before starting
  the duties, so a leader whose session the server ended (a restart, pg_terminate_backend) has
  noticed and stopped first. Takeover after a leader dies therefore takes about three intervals.
- SQLite: one machine, so an exclusive `flock` on a file beside the database. A second process
  on the same file waits as a standby, exactly as on PostgreSQL.
- Anything else (an in-memory database): the process is the leader.

Rows a dead leader had claimed wait for their lease to run out (bot/sender.py), so a leader that
cannot yet see it has lost (e.g. cut off from the database) still does not overlap with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# First key of the advisory lock ("afts"); the second is the hash of the schema, so deployments
# (and test runs) sharing one database in different schemas each have their own leader.
LOCK_CLASS = 0x61667473
CHECK_TIMEOUT = 5.0


class Duty(Protocol):
    """Something only the leader runs; started when leadership is won, stopped when it is lost."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Lock(Protocol):
    async def acquire(self) -> bool: ...

    async def held(self) -> bool: ...

    async def release(self) -> None: ...


class _Always:
    """No other process can share this database: always the leader."""

    async def acquire(self) -> bool:
        return True

    async def held(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class _FileLock:
    """An exclusive flock; the kernel drops it when the process dies, however it dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.unlocked = False

    async def acquire(self) -> bool:
        assert fcntl is not None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            # SQLite is one process by design: a folder we cannot lock in must not stop sending.
            log.warning("cannot create %s (%s): leading without the lock file", self.path, exc)
            self.unlocked = True
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    async def held(self) -> bool:
        return self.fd is not None or self.unlocked

    async def release(self) -> None:
        self.unlocked = False
        if self.fd is not None:
            assert fcntl is not None
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class _AdvisoryLock:
    """pg_try_advisory_lock on a connection of its own, kept open while leading or waiting."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.conn: AsyncConnection | None = None
        self.key: int | None = None

    async def _connect(self) -> AsyncConnection:
        if self.conn is None:
            conn = await self.engine.connect()
            try:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                # Let the server notice a vanished leader host within seconds, not hours.
                for name, value in (
                    ("tcp_keepalives_idle", 5),
                    ("tcp_keepalives_interval", 2),
                    ("tcp_keepalives_count", 3),
                ):
                    await conn.execute(text(f"SET {name} = {value}"))
                self.key = int(await conn.scalar(text("SELECT hashtext(current_schema())")) or 0)
            except BaseException:
                await conn.invalidate()
                await conn.close()
                raise
            self.conn = conn
        return self.conn

    async def acquire(self) -> bool:
        try:
            conn = await self._connect()
            query = text("SELECT pg_try_advisory_lock(:a, :b)")
            return bool(await conn.scalar(query, {"a": LOCK_CLASS, "b": self.key}))
        except Exception:
            await self._drop()
            raise

    async def held(self) -> bool:
        """Is our session alive and still holding the lock? Asked on the lock's own connection."""
        if self.conn is None or self.key is None:
            return False
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                found = await self.conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND pid = pg_backend_pid() AND classid = :a AND objid = :b AND objsubid = 2"
                    ),
                    {"a": LOCK_CLASS, "b": self.key % 2**32},
                )
        except Exception as exc:
            log.warning("leader check failed: %s", exc)
            return False
        return bool(found)

    async def release(self) -> None:
        """Unlock and close. Closing ends the session, which drops the lock even if unlock failed."""
        if self.conn is not None and self.key is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CHECK_TIMEOUT):
                    await self.conn.execute(
                        text("SELECT pg_advisory_unlock(:a, :b)"), {"a": LOCK_CLASS, "b": self.key}
                    )
        await self._drop()

    async def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()


def _lock_for(engine: AsyncEngine) -> _Lock:
    if engine.dialect.name == "postgresql":
        return _AdvisoryLock(engine)
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:") and fcntl is not None:
        return _FileLock(Path(database).with_name(Path(database).name + ".leader"))
    return _Always()


class Leadership:
    """Wins, holds and loses leadership, starting and stopping the duties accordingly.

    `start()` returns after the first attempt (on SQLite a lone process is leading by then, its
    duties started; on PostgreSQL they start after the takeover grace); a standby keeps trying in
    the background. `stop()` stops the duties and lets go.
    """

    def __init__(self, engine: AsyncEngine, duties: list[Duty], *, check_interval: float = 1.0) -> None:
        self.engine = engine
        self.duties = duties
        self.check_interval = check_interval
        self.is_leader = False
        self._lock = _lock_for(engine)
        # Only a lock the server can drop while its holder lives needs the holder time to notice.
        self.takeover_grace = 2 * check_interval if isinstance(self._lock, _AdvisoryLock) else 0.0
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._stopping.clear()
        self._first_attempt.clear()
        self._task = asyncio.create_task(self._run(), name="leadership")
        waiter = asyncio.ensure_future(self._first_attempt.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            self._task.result()  # it failed: say why

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _pause(self, seconds: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.check_interval if seconds is None else seconds):
                await self._stopping.wait()

    async def _run(self) -> None:
        waiting_logged = False
        while not self._stopping.is_set():
            try:
                won = await self._lock.acquire()
            except Exception as exc:
                log.warning("could not try for leadership: %s", exc)
                won = False
            if not won:
                if not waiting_logged:
                    log.info("another process leads; standing by")
                    waiting_logged = True
                self._first_attempt.set()
                await self._pause()
                continue
            waiting_logged = False
            try:
                lost = await self._lead()
            finally:
                await self._lock.release()
            if lost:
                await self._pause()  # rejoin as a standby, not at once: let a flapping link settle
        await self._lock.release()  # a standby's connection
        self._first_attempt.set()

    async def _lead(self) -> bool:
        """Hold the lock: start the duties, re-check every interval, stop them when it is lost.

        Returns True if leadership was lost (rather than given up by `stop()`).
        """
        if self.takeover_grace:
            self._first_attempt.set()  # start() need not wait out the grace
            await self._pause(self.takeover_grace)
            if self._stopping.is_set():
                return False
            if not await self._lock.held():
                return True
        log.info("leading: starting %s duties", len(self.duties))
        await self._start_duties()
        self.is_leader = True
        self._first_attempt.set()
        try:
            while not self._stopping.is_set():
                await self._pause()
                if not self._stopping.is_set() and not await self._lock.held():
                    log.warning("leadership lost: stopping the duties")
                    return True
            return False
        finally:
            self.is_leader = False
            await self._stop_duties()

    async def _start_duties(self) -> None:
        for duty in self.duties:
            try:
                await duty.start()
            except Exception:
                log.exception("starting %s failed", type(duty).__name__)

    async def _stop_duties(self) -> None:
        for duty in reversed(self.duties):
            try:
                await duty.stop()
            except Exception:
                log.exception("stopping %s failed", type(duty).__name__)
