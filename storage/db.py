"""Engine and session factory. Built once by the runtime and passed down; nothing module-level."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)

from storage import sqlite

MIGRATIONS = Path(__file__).parent / "migrations"
# A pooled PostgreSQL connection idle longer than this is pinged before it is used again.
PING_AFTER_IDLE = 1.0  # seconds


def create_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout: float | None = None,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout on every connection.

    The pool sizes (bot.config.engine_options) apply to PostgreSQL, where every worker's pool
    counts against the server's max_connections; SQLite keeps SQLAlchemy's defaults (one file,
    one writer at a time: more connections would only wait on its lock).
    """
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and "?" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("async_creator", sqlite.connector(path, timeout=30))
        else:
            kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    kwargs.update({k: v for k, v in pool.items() if v is not None})
    engine = create_async_engine(url, **kwargs)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only if it sat idle (SQLAlchemy's recipe for custom
    pessimistic disconnect handling).

    `pool_pre_ping` pings on every checkout, which with asyncpg is three round trips (BEGIN, an
    empty query, ROLLBACK): on an update of three statements that doubled the round trips and cost
    a third of its CPU (docs/benchmarks.md, "Inbound updates"). A connection in constant use needs
    no ping: if the server went away under load, the first statement fails, SQLAlchemy invalidates
    the whole pool, and the event is offered again (handlers.dispatch.Unavailable). A connection
    that sat idle (the dashboard after a quiet night, a restart during a lull) is pinged, and a dead
    one is replaced before anyone sees an error.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            dbapi_conn.ping()
        except Exception as exc:
            raise DisconnectionError(str(exc)) from exc  # the pool drops it and tries another


class _CommitInPlace:
    """`sessionmaker.begin()` that commits in the caller's task.

    SQLAlchemy 2.1 ends `async_sessionmaker.begin()` in a task of its own (commit, then close), so
    that a cancelled caller cannot abandon the cleanup. Starting that task hands the event loop to
    every other task ready to run while the transaction still holds its locks: on SQLite, where a
    transaction otherwise runs from BEGIN to COMMIT without yielding (storage/sqlite.py), each of
    them that writes meets SQLITE_BUSY and backs off. At 300 updates a second that was about one
    update in two, and the source of multi-second tails. Here the commit (or rollback) runs
    before anything else; only the close, when no lock is held any more, goes through
    SQLAlchemy's task. (What is given up: a cancellation that lands while a PostgreSQL commit
    is on the wire interrupts it, as a lost connection would; the update is then offered again.)
    """

    __slots__ = ("_session", "_transaction")

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._transaction: AsyncSessionTransaction | None = None

    async def __aenter__(self) -> AsyncSession:
        self._transaction = self._session.begin()
        await self._transaction.__aenter__()
        return self._session

    async def __aexit__(self, kind: Any, value: Any, traceback: Any) -> None:
        assert self._transaction is not None
        try:
            await self._transaction.__aexit__(kind, value, traceback)
        finally:
            await self._session.__aexit__(kind, value, traceback)


class Sessionmaker(async_sessionmaker[AsyncSession]):
    """An `async_sessionmaker` whose `begin()` commits in place (see `_CommitInPlace`)."""

    def begin(self) -> _CommitInPlace:  # type: ignore[override]
        return _CommitInPlace(self())


def create_sessionmaker(engine: AsyncEngine) -> Sessionmaker:
    return Sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision`; the app calls this on start."""

    def _upgrade(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
