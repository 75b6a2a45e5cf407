"""`INSERT ... ON CONFLICT DO NOTHING`: write a row unless its unique key is taken, in one statement.

Used where two writers may race for one key (an update id, a child's handover of the day) instead
of a savepoint around an ORM insert: a savepoint costs two more statements and a unit-of-work
flush, and with SQLite's Python driver a savepoint that is a transaction's first write commits on
its own (see storage/updates.py). Statements are built once per table, key and dialect: building
and cache-keying one costs more CPU than SQLite takes to run it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

_DIALECTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_BUILT: dict[tuple[str, str, tuple[str, ...], str | None], Any] = {}


def _statement(dialect: str, table: Table, key: tuple[str, ...], returning: str | None) -> Any:
    cached = _BUILT.get((dialect, table.name, key, returning))
    if cached is None:
        build = _DIALECTS.get(dialect)
        if build is None:
            raise NotImplementedError(f"no INSERT ... ON CONFLICT for the {dialect} dialect")
        cached = build(table).on_conflict_do_nothing(index_elements=list(key))
        if returning is not None:
            cached = cached.returning(table.c[returning])
        _BUILT[(dialect, table.name, key, returning)] = cached
    return cached


async def insert_new(session: AsyncSession, table: Table, key: tuple[str, ...], row: dict[str, Any]) -> bool:
    """Insert `row` unless a row with the same `key` exists; whether it was inserted."""
    statement = _statement(session.get_bind().dialect.name, table, key, None)
    result = await session.execute(statement, row)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def insert_new_id(
    session: AsyncSession, table: Table, key: tuple[str, ...], row: dict[str, Any]
) -> int | None:
    """Insert `row` unless a row with the same `key` exists; the new row's id, or None."""
    statement = _statement(session.get_bind().dialect.name, table, key, "id")
    return await session.scalar(statement, row)
