"""Issue 9's acceptance: `afterschool backup` and `restore` give back a working bot.

A school with a bound parent who has applied; a backup taken by the real command while the bot
holds a write transaction open; a restore into another DATA_DIR; then a fresh engine on the
restored file answers the same parent as before, through the dialog core.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

from sqlalchemy import func, select

from handlers.dialog import Links
from handlers.dispatch import Deps
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import AccountBinding, Application, AuditLog
from tests.dialog import Chat, text_of
from tests.school import load_example_school, parent_code


async def afterschool(data_dir: Path, *args: str, database_url: str = "") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(DATA_DIR=str(data_dir), DEFAULT_LOCALE="en")
    if database_url:
        env["DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=data_dir.parent, env=env, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def apply_as_parent(parent: Chat) -> None:
    assert "Step 1" in text_of(await parent.say("/apply"))
    for payload in ("a:n", "a:n", "a:n", "a:n", "a:w:n"):
        await parent.press(payload)
    assert "submitted" in text_of(await parent.press("a:ok"))


async def test_backup_while_running_restores_to_a_working_bot(tmp_path: Path) -> None:
    live, elsewhere = tmp_path / "live", tmp_path / "restored"
    live.mkdir()
    engine = create_engine(f"sqlite+aiosqlite:///{live / 'afterschool.sqlite3'}")
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    await load_example_school(sessionmaker)
    deps = Deps(sessionmaker=sessionmaker, links=Links("http://school.test"), default_locale="en")
    parent = Chat(deps, user_id="parent-1", language="en")
    assert "linked" in text_of(await parent.say(f"/start {await parent_code(sessionmaker, 'S2026101')}"))
    await apply_as_parent(parent)

    backup = tmp_path / "backups" / "afterschool.sqlite3"
    async with sessionmaker() as session:  # the bot is mid-transaction, with a write not committed
        session.add(AuditLog(action="test.uncommitted"))
        await session.flush()
        code, out, err = await afterschool(live, "backup", str(backup))
        await session.rollback()
    assert code == 0, err
    assert "Backup written" in out and "personal data" in out
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert not list(backup.parent.glob(".*partial"))  # written atomically, nothing left over
    await engine.dispose()

    code, out, err = await afterschool(elsewhere, "restore", str(backup))
    assert code == 0, err
    assert "Restored" in out
    code, _, err = await afterschool(elsewhere, "restore", str(backup))  # never over a database
    assert code == 2 and "--force" in err
    code, out, err = await afterschool(elsewhere, "restore", str(backup), "--force")
    assert code == 0, err

    restored = create_engine(f"sqlite+aiosqlite:///{elsewhere / 'afterschool.sqlite3'}")
    try:
        maker = create_sessionmaker(restored)
        async with maker() as session:
            assert await session.scalar(select(func.count()).select_from(AccountBinding)) == 1
            assert await session.scalar(select(func.count()).select_from(Application)) == 1
            actions = set(await session.scalars(select(AuditLog.action)))
        assert "test.uncommitted" not in actions  # a consistent snapshot: committed data only
        deps = Deps(sessionmaker=maker, links=Links("http://school.test"), default_locale="en")
        again = Chat(deps, user_id="parent-1", language="en")
        assert "董静" in text_of(await again.say("/start"))  # still linked: greeted by name
        status = text_of(await again.say("/status"))
        assert "曹若曦" in status
    finally:
        await restored.dispose()


async def test_restore_refuses_what_is_not_a_backup_of_ours(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    for path, says in ((junk, "not a sound SQLite database"), (foreign, "not one of this bot")):
        code, _, err = await afterschool(data, "restore", str(path))
        assert code == 2 and says in err, err
    code, _, err = await afterschool(data, "restore", str(tmp_path / "missing.sqlite3"))
    assert code == 2 and "no file" in err
    assert not (data / "afterschool.sqlite3").exists()  # nothing was created on the way


async def test_postgresql_gets_the_pg_dump_commands_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://afterschool:s3cret-pw@db.internal:5433/afterschool"
    code, out, _ = await afterschool(tmp_path, "backup", "nightly.dump", database_url=url)
    assert code == 2  # nothing was backed up: a cron job must not take this for success
    expected = (
        "pg_dump --format=custom --no-owner --host db.internal --port 5433 --username afterschool "
        "--file nightly.dump afterschool"
    )
    assert expected in out and "s3cret-pw" not in out
    code, out, _ = await afterschool(tmp_path, "restore", "nightly.dump", database_url=url)
    assert code == 2 and "pg_restore --no-owner --exit-on-error" in out and "afterschool migrate" in out
