"""Engine and session factory. Built once by the runtime and passed down; nothing module-level."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)

from storage import sqlite

MIGRATIONS = Path(__file__).parent / "migrations"


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
    kwargs.setdefault("pool_pre_ping", True)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    kwargs.update({k: v for k, v in pool.items() if v is not None})
    return create_async_engine(url, **kwargs)


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
