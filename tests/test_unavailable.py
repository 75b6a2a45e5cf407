"""What counts as "the database is unavailable": real outages raise `Unavailable` from the dialog
core (so the channel gives the update back), anything else keeps the generic answer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

import messages
from handlers.dialog import Event, Links
from handlers.dispatch import Deps, Unavailable, handle
from storage.availability import is_unavailable
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import ProcessedUpdate
from tests.telegram_app import free_port

LINKS = Links("http://school.test", "afterschool_test_bot")


def help_event(update_id: int) -> Event:
    return Event.from_text("telegram", "7001", "7001", "/help", language="en", update_id=update_id)


async def test_sqlite_still_locked_after_the_busy_timeout_is_an_outage_and_nothing_is_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.sqlite3"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.2})
    await migrate(engine)
    deps = Deps(sessionmaker=create_sessionmaker(engine), links=LINKS)
    other = sqlite3.connect(path, isolation_level=None)  # another process writing
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable):
            await handle(help_event(1), deps)
        other.execute("COMMIT")
        # Offered again once the lock is gone: processed now, and its id recorded once.
        (reply,) = await handle(help_event(1), deps)
        assert "What I can do" in reply.text
        assert await handle(help_event(1), deps) == []
        async with deps.sessionmaker() as session:
            assert (await session.execute(text("SELECT count(*) FROM processed_update"))).scalar() == 1
    finally:
        other.close()
        await engine.dispose()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_no_postgresql_listening_is_an_outage(host: str) -> None:
    """Refused at connect (for "localhost" possibly on two addresses at once: no errno)."""
    engine = create_engine(f"postgresql+asyncpg://postgres@{host}:{free_port()}/test")
    try:
        with pytest.raises(Unavailable):
            await handle(help_event(2), Deps(sessionmaker=create_sessionmaker(engine), links=LINKS))
    finally:
        await engine.dispose()


async def test_a_refused_update_id_is_a_constraint_not_an_outage(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    try:
        with pytest.raises(IntegrityError) as caught:
            async with sessionmaker.begin() as session:
                session.add_all(
                    [ProcessedUpdate(platform="t", update_id=1), ProcessedUpdate(platform="t", update_id=1)]
                )
        assert not is_unavailable(caught.value)
    finally:
        await engine.dispose()


def test_file_and_network_errors_outside_the_database_are_not_outages(tmp_path: Path) -> None:
    """A flow that cannot write its file, or anything refused outside database code, is a failure
    to answer (the generic apology), never a reason to have Telegram re-deliver forever."""
    with pytest.raises(FileNotFoundError) as missing:
        (tmp_path / "no-such-folder" / "export.xlsx").write_bytes(b"")
    assert not is_unavailable(missing.value)
    for error in (OSError(28, "No space left on device"), ConnectionRefusedError(111, "Connection refused")):
        with pytest.raises(OSError) as raised:
            raise error
        assert not is_unavailable(raised.value)


def test_the_outage_notice_exists_in_every_language() -> None:
    texts = {locale: messages.render("unavailable", locale) for locale in messages.LOCALES}
    assert all(texts.values()) and len(set(texts.values())) == len(texts)
