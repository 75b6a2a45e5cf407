"""`afterschool backup` and `afterschool restore` (docs/deploy.md, "Backups").

SQLite is copied with SQLite's online backup API: a consistent snapshot even while the bot writes
(copying the file is not: the WAL holds the latest transactions). The copy is written beside the
target and renamed into place, so a crash mid-way never leaves half a backup under the final name.
A restore checks the file is a sound database of ours before it replaces anything, then brings its
schema to this version's head. PostgreSQL has the right tools already (pg_dump, pg_restore): we
print their exact commands rather than wrap them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from storage.db import alembic_config, create_engine, migrate


class BackupError(Exception):
    """`key` names the problem (`cli_backup.<key>`); `params` fill its placeholders."""

    def __init__(self, key: str, **params: object) -> None:
        self.key, self.params = key, params
        super().__init__(f"{key} {params}")


@dataclass(frozen=True)
class Summary:
    path: Path
    megabytes: float
    tables: int
    version: str


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL, or None for another database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    return Path(url.database or "")


def _check(path: Path) -> Summary:
    """A sound SQLite database with our schema version, or BackupError saying what it is not."""
    if not path.is_file():
        raise BackupError("not_found", path=path)
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise BackupError("damaged", path=path)
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            if "alembic_version" not in tables:
                raise BackupError("not_ours", path=path)
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:  # not a database at all, or encrypted
        raise BackupError("damaged", path=path) from None
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if row is None or row[0] not in known:
        raise BackupError("unknown_version", path=path, version=row[0] if row else "-")
    return Summary(path, path.stat().st_size / 1e6, len(tables), str(row[0]))


def _copy(source: Path, target: Path) -> None:
    """SQLite's online backup of `source` into `target`, atomically: a temporary file beside it,
    made a self-contained single file (no WAL), synced, then renamed over the target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    temporary.unlink(missing_ok=True)
    try:
        # Owner-only from the start: a backup holds the children's and parents' personal data.
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        src = contextlib.closing(sqlite3.connect(source, timeout=30))
        with src as reading, contextlib.closing(sqlite3.connect(temporary)) as writing:
            reading.backup(writing, pages=1024)  # in steps: the bot's writers wait only briefly
            writing.execute("PRAGMA journal_mode=DELETE")
        with open(temporary, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def backup_sqlite(source: Path, target: Path) -> Summary:
    """Write a consistent copy of the live database to `target` (replacing it) and describe it."""
    if not source.is_file():
        raise BackupError("no_database", path=source)
    _copy(source, target)
    return _check(target)


def _put_in_place(backup: Path, target: Path, force: bool) -> None:
    _check(backup)
    if target.exists() and not force:
        raise BackupError("target_exists", path=target)
    # A WAL or shared-memory file left by the replaced database would be replayed into this one.
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    _copy(backup, target)


async def restore_sqlite(backup: Path, target: Path, *, force: bool) -> Summary:
    """Put a checked backup in place of the database (only with `force` if one is there), then
    migrate it to this version's schema. The bot must be stopped: it would keep the old file open."""
    await asyncio.to_thread(_put_in_place, backup, target, force)
    engine = create_engine(f"sqlite+aiosqlite:///{target}")
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return await asyncio.to_thread(_check, target)


def postgres_commands(database_url: str, path: Path) -> tuple[str, str]:
    """The pg_dump and pg_restore commands for this database. The password is not in them: give it
    through PGPASSWORD or ~/.pgpass, never on a command line (other users can see those)."""
    url = make_url(database_url)
    common = []
    if url.host:
        common += ["--host", url.host]
    if url.port:
        common += ["--port", str(url.port)]
    if url.username:
        common += ["--username", url.username]
    name = url.database or ""
    dump = ["pg_dump", "--format=custom", "--no-owner", *common, "--file", str(path), name]
    restore = ["pg_restore", "--no-owner", "--exit-on-error", *common, "--dbname", name, str(path)]
    return shlex.join(dump), shlex.join(restore)
