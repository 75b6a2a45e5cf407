"""SQLite on the event loop: an aiosqlite-shaped connection that calls sqlite3 in place.

aiosqlite runs every call (cursor, execute, fetch, close) on a thread of its own and wakes the event
loop for each answer: about 100 thread round trips per chat update, which cost more CPU than the
queries (a query on a local file takes microseconds). Here each call runs on the loop's thread,
so a transaction runs from BEGIN to COMMIT without another task interleaving unless the code
awaits something else meanwhile. What would block the loop is SQLite's lock: the connection does
not wait inside SQLite (busy timeout 0); a statement refused with SQLITE_BUSY is retried after an
`asyncio.sleep`, so other tasks run while another process (a second worker, a CLI command) holds
the lock. Figures and the decision: docs/benchmarks.md, docs/decisions.md.

SQLAlchemy's aiosqlite dialect is used unchanged; `create_async_engine(async_creator=...)` hands
it these connections instead of aiosqlite's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

SQLITE_BUSY = 5
SQLITE_LOCKED = 6
# A read transaction that must become a write after another connection wrote: waiting cannot help,
# the transaction has to start again (SQLAlchemy surfaces it as an OperationalError).
SQLITE_BUSY_SNAPSHOT = 517
FIRST_PAUSE = 0.001
LONGEST_PAUSE = 0.05


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # older Python: only the message tells
        return "database is locked" in str(exc)
    return code != SQLITE_BUSY_SNAPSHOT and code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)


async def _patiently(call: Callable[[], Any], patience: float) -> Any:
    """Run a sqlite3 call; while another connection holds the lock, let the loop run and retry."""
    try:
        return call()
    except sqlite3.OperationalError as exc:
        if not _busy(exc):
            raise
    deadline = time.monotonic() + patience
    pause = FIRST_PAUSE
    while True:
        await asyncio.sleep(pause)
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline:
                raise
        pause = min(pause * 2, LONGEST_PAUSE)


class Cursor:
    def __init__(self, connection: Connection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        await _patiently(lambda: self._cursor.execute(sql, parameters), self._connection.timeout)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        rows = list(parameters)  # a retry must see the rows again
        await _patiently(lambda: self._cursor.executemany(sql, rows), self._connection.timeout)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _Immediately:
    """Stands in for aiosqlite's request queue, which SQLAlchemy uses to set the isolation level."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class Connection:
    """The parts of aiosqlite.Connection that SQLAlchemy's aiosqlite dialect calls."""

    def __init__(self, conn: sqlite3.Connection, timeout: float) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._tx = _Immediately()
        self.timeout = timeout

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    def cursor(self) -> Cursor:
        return Cursor(self, self._open().cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        conn = self._open()
        await _patiently(conn.commit, self.timeout)

    async def rollback(self) -> None:
        self._open().rollback()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate): nothing runs elsewhere to wait for."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._open().create_function(*args, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._open().in_transaction


def connector(path: str, timeout: float = 30.0) -> Callable[[], Any]:
    """The `async_creator` for create_async_engine: a fresh connection to the file at `path`."""

    async def connect() -> Connection:
        # check_same_thread off: the pool may hand the connection to a migration run in a thread.
        conn = sqlite3.connect(path, timeout=0, check_same_thread=False)
        return Connection(conn, timeout)

    return connect
