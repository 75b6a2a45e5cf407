"""Telling "the database cannot be reached now" apart from every other error.

An update that fails because the database is down must not be answered as handled: the channel
gives it back to Telegram (503, or an unconfirmed offset) and it is processed when the database is
back. Any other error keeps the generic answer, so a bug is never mistaken for an outage (which
would make Telegram re-deliver the same failing update again and again).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

# SQLSTATE classes and codes that mean "no usable connection": 08 connection exception,
# 57P01-57P03 the server is shutting down, crashed or is starting up, 53300 too many connections.
_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")
# SQLite's messages once the busy timeout has passed: another process holds the write lock.
_SQLITE_BUSY = ("database is locked", "database is busy")
# Modules whose code opens and uses database connections: a network error raised inside them
# came from the database, not from anything else an event's handling does.
_DATABASE_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite", "psycopg", "sqlite3")


def is_unavailable(error: BaseException) -> bool:
    """True when `error` (or what caused it) says the database is unreachable, not that the work
    was wrong: a connection SQLAlchemy invalidated, a connection refused or timed out while
    connecting, a server shutting down or starting up, SQLite still locked after its busy timeout,
    or no free connection in the pool."""
    for exc in _chain(error):
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection to give
            return True
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_SQLSTATE_PREFIXES):
            return True
        if type(exc).__name__ == "OperationalError" and any(m in str(exc).lower() for m in _SQLITE_BUSY):
            return True
        # Refused, reset, timed out, no such host, or "Multiple exceptions: Connect call failed"
        # (no errno) for a name with several addresses; a file's error names the file.
        if isinstance(exc, OSError) and exc.filename is None and _raised_in_database(exc):
            return True
    return False


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error, the driver error SQLAlchemy wrapped (`orig`), and their causes and contexts."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        exc = todo.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        todo.extend(
            e
            for e in (getattr(exc, "orig", None), exc.__cause__, exc.__context__)
            if isinstance(e, BaseException)
        )


def _raised_in_database(exc: BaseException) -> bool:
    """Whether the traceback passes through database code (so a file error in a flow is not it)."""
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.split(".")[0] in _DATABASE_MODULES:
            return True
        tb = tb.tb_next
    return False
