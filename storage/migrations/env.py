"""Alembic environment: the app passes its own connection (see storage.db.migrate)."""

from __future__ import annotations

from typing import Any

from alembic import context

from storage.models import Base, UTCDateTime


def render_item(type_: str, obj: Any, autogen_context: Any) -> Any:
    """Write our UTC wrapper as the plain column type it stands for."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """The job store's table is created by migration 0003 but has no model: autogenerate leaves it be."""
    return not (type_ == "table" and name == "apscheduler_jobs")


config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` from a shell without our runtime
    raise SystemExit("Run migrations with `afterschool migrate`.")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    render_item=render_item,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
