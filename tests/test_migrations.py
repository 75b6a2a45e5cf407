"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from storage.models import Base


def _differences(conn: Connection) -> list[Any]:
    def ours(name: str | None, type_: str, _parents: Any) -> bool:
        # Tables without a model (e.g. the scheduler's job store) are somebody else's business.
        return type_ != "table" or name in Base.metadata.tables or name == "alembic_version"

    context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": ours})
    return [d for d in compare_metadata(context, Base.metadata) if d[0] != "remove_table"]


async def test_migrations_and_models_agree(engine):
    async with engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
