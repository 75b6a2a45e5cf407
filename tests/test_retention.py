"""Data is kept only as long as it serves: the purge deletes exactly what is past its period (on
SQLite and PostgreSQL), removed pickup adults go, the nightly job runs it, and the command line
counts first. The audit log holds ids and short codes only; only phone tails are stored."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine
from sqlalchemy import func, select

from bot import jobs
from bot.cli import main
from bot.scheduler import Scheduler
from storage import retention
from storage.clock import utcnow
from storage.models import (
    Absence,
    Attendance,
    AuditLog,
    ConversationState,
    DashboardLink,
    DashboardSession,
    Handover,
    InviteCode,
    InviteFailure,
    Outbox,
    OutboxStatus,
    Person,
    PickupAdult,
    PlatformAccount,
    ProcessedUpdate,
    ServiceGroup,
    Student,
)
from storage.retention import RetentionPolicy
from tests.dialog import Chat, text_of
from tests.school import load_example_school, parent_code
from tests.test_scheduler import sync_url

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=utcnow().tzinfo)
POLICY = RetentionPolicy()  # 365 days of attendance, 7 of drafts and update ids, 30 of the rest
OLD, RECENT = NOW - timedelta(days=400), NOW - timedelta(days=3)


async def _seed(sessionmaker) -> None:
    """One old and one recent row of every kind the purge knows."""
    async with sessionmaker.begin() as session:
        student = (await session.scalars(select(Student).order_by(Student.id).limit(1))).one()
        person = (await session.scalars(select(Person).order_by(Person.id).limit(1))).one()
        school, sid = student.school_id, student.id
        group = ServiceGroup(
            school_id=school, term="2026", name="阅读", activity_type="reading", weekdays=["mon"], capacity=9
        )
        session.add(group)
        accounts = [
            PlatformAccount(platform="test", external_id=str(i), chat_id=str(i), locale="zh_CN")
            for i in (1, 2)
        ]
        session.add_all(accounts)
        await session.flush()
        for at in (OLD, RECENT):
            day = at.date()
            session.add(
                Attendance(
                    school_id=school, student_id=sid, group_id=group.id, day=day, present=True, marked_at=at
                )
            )
            session.add(
                Handover(
                    school_id=school,
                    student_id=sid,
                    group_id=group.id,
                    day=day,
                    kind="listed",
                    adult_name="王阿姨",
                    relation="邻居",
                    staff_person_id=person.id,
                    handed_at=at,
                )
            )
            session.add(
                Absence(
                    school_id=school,
                    student_id=sid,
                    first_day=day,
                    last_day=day,
                    reason="病假",
                    reported_at=at,
                )
            )
            session.add(ProcessedUpdate(platform="test", update_id=int(at.timestamp()), processed_at=at))
            session.add(InviteFailure(account_id=accounts[0].id, at=at))
            session.add(
                Outbox(
                    account_id=accounts[0].id,
                    payload={"text": "董静"},
                    status=OutboxStatus.SENT.value,
                    not_before=at,
                    created_at=at,
                    sent_at=at,
                )
            )
            session.add(
                InviteCode(
                    school_id=school,
                    code=f"C{at.day}{at.month}{at.year}",
                    role="parent",
                    person_id=person.id,
                    expires_at=at,
                )
            )
            session.add(DashboardLink(school_id=school, person_id=person.id, secret_hash="x", expires_at=at))
            session.add(
                DashboardSession(
                    school_id=school,
                    person_id=person.id,
                    secret_hash=f"s{at.year}",
                    created_at=at,
                    last_seen_at=at,
                )
            )
            session.add(
                PickupAdult(
                    school_id=school, student_id=sid, name="张三", relation="舅舅", code="1234", removed_at=at
                )
            )
        session.add(PickupAdult(school_id=school, student_id=sid, name="李四", relation="外婆", code="5678"))
        session.add(Outbox(account_id=accounts[0].id, payload={"text": "x"}, not_before=OLD, created_at=OLD))
        session.add(ConversationState(account_id=accounts[0].id, flow="apply", step="days", updated_at=OLD))
        session.add(
            ConversationState(account_id=accounts[1].id, flow="apply", step="days", updated_at=RECENT)
        )


async def _count(sessionmaker, table: Any) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(table)) or 0


async def test_the_purge_deletes_exactly_what_is_past_its_period(sessionmaker, tmp_path: Path):
    await load_example_school(sessionmaker)
    await _seed(sessionmaker)
    chart = tmp_path / "surveys" / "1" / "tok" / "zh_CN" / "q1.png"
    fresh = tmp_path / "surveys" / "2" / "tok" / "zh_CN" / "q1.png"
    for path in (chart, fresh):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"png")
    os.utime(chart, (OLD.timestamp(), OLD.timestamp()))
    os.utime(fresh, (RECENT.timestamp(), RECENT.timestamp()))
    before = {t: await _count(sessionmaker, t) for t in (Attendance, Outbox, PickupAdult, ConversationState)}

    async with sessionmaker() as session:  # a dry run counts and deletes nothing
        counted = await retention.purge_expired(session, NOW, POLICY, data_dir=tmp_path, dry_run=True)
    assert {t: await _count(sessionmaker, t) for t in before} == before and chart.exists()

    async with sessionmaker.begin() as session:
        purged = await retention.purge_expired(session, NOW, POLICY, data_dir=tmp_path)
    assert purged == counted
    expected = {
        "attendance": 1,
        "handover": 1,
        "absence": 1,
        "pickup_adult": 1,
        "conversation_state": 1,
        "processed_update": 1,
        "outbox": 1,
        "invite_failure": 2,
        "invite_code": 1,
        "dashboard_link": 2,
        "dashboard_session": 2,
        "files": 1,
    }
    assert {k: v for k, v in purged.items() if v} == expected
    for table in (Attendance, Handover, Absence, ProcessedUpdate, InviteCode):
        assert await _count(sessionmaker, table) == 1, table  # the recent one stays
    for table in (InviteFailure, DashboardLink, DashboardSession):  # traces: a day is enough
        assert await _count(sessionmaker, table) == 0, table
    assert await _count(sessionmaker, Outbox) == 2  # the recent sent row and the old pending one
    assert await _count(sessionmaker, PickupAdult) == 2  # the standing adult, and one removed 3 days ago
    assert await _count(sessionmaker, ConversationState) == 1
    assert not chart.exists() and not chart.parent.exists() and fresh.exists()

    async with sessionmaker.begin() as session:  # a second run finds nothing more
        assert not any((await retention.purge_expired(session, NOW, POLICY, data_dir=tmp_path)).values())


async def test_a_removed_pickup_adult_is_erased_after_the_pickup_period(deps, sessionmaker):
    await load_example_school(sessionmaker)
    parent = Chat(deps)
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    await parent.say("/pickup")
    asked = text_of(await parent.press(f"k:add:{await _student_id(sessionmaker, 'S2026101')}"))
    assert "值班老师" in asked and "30 天" in asked  # why it is asked, and for how long it is kept
    for answer in ("王阿姨", "邻居", "skip"):
        await (parent.press("k:skip") if answer == "skip" else parent.say(answer))
    async with sessionmaker() as session:
        adult = (await session.scalars(select(PickupAdult))).one()
    await parent.press(f"k:rm:{adult.id}")

    async with sessionmaker.begin() as session:
        assert (await retention.purge_expired(session, utcnow() + timedelta(days=29), POLICY))[
            "pickup_adult"
        ] == 0
    async with sessionmaker.begin() as session:
        assert (await retention.purge_expired(session, utcnow() + timedelta(days=31), POLICY))[
            "pickup_adult"
        ] == 1
    assert await _count(sessionmaker, PickupAdult) == 0


async def _student_id(sessionmaker, number: str) -> int:
    async with sessionmaker() as session:
        found = await session.scalar(select(Student.id).where(Student.student_no == number))
        assert found is not None
        return found


async def test_the_nightly_job_is_scheduled_and_purges(engine, sessionmaker, tmp_path: Path, caplog):
    await load_example_school(sessionmaker)
    await _seed(sessionmaker)
    scheduler = Scheduler(
        sessionmaker,
        await sync_url(engine),
        sync_interval=3600,
        files_dir=tmp_path,
        retention=POLICY,
        retention_cron="30 3 * * *",
    )
    await scheduler.start()
    try:
        job = (await scheduler.jobs())["retention:purge"]
        assert job.func_ref == "bot.jobs:purge_retention" and "30 3 * * *" in job.name
        with time_machine.travel(NOW, tick=False), caplog.at_level("INFO", logger="bot.jobs"):
            await jobs.purge_retention()
    finally:
        await scheduler.stop()
    assert await _count(sessionmaker, Attendance) == 1
    logged = [r.getMessage() for r in caplog.records if "retention purge" in r.getMessage()]
    assert logged and "attendance 1" in logged[0] and "董静" not in logged[0]


def test_purge_on_the_command_line_counts_first(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEFAULT_LOCALE", "en")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["purge", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "attendance\t0" in out
    assert main(["purge"]) == 0
    assert "Deleted 0 items" in capsys.readouterr().out


SHORT_CODE = re.compile(r"^[a-z0-9_.:\-]{1,40}$|^[0-9a-f]{64}$")


def _plain(value: Any) -> bool:
    """Ids, counts, flags, dates and short codes: nothing a person typed or is called."""
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str):
        return bool(SHORT_CODE.match(value))
    if isinstance(value, list):
        return all(isinstance(v, int | bool) for v in value)
    return False


async def test_the_audit_log_holds_ids_and_short_codes_only(deps, sessionmaker):
    """A realistic stretch of use (binding, consent, a refused code, pickup, absence, applying)."""
    await load_example_school(sessionmaker)
    parent = Chat(deps)
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    await Chat(deps, user_id="9").say("/start WRONGCODE2345")
    student = await _student_id(sessionmaker, "S2026101")
    await parent.say("/pickup")
    await parent.press(f"k:add:{student}")
    await parent.say("王阿姨")
    await parent.say("邻居")
    await parent.say("13912345678")
    await parent.say("/absent")
    async with sessionmaker() as session:
        rows = list(await session.scalars(select(AuditLog)))
        tails = set(await session.scalars(select(PickupAdult.phone_tail))) | set(
            await session.scalars(select(Person.phone_tail))
        )
    actions = {r.action for r in rows}
    assert {"invite.bound", "invite.refused", "privacy.accepted", "pickup.adult_added"} <= actions
    for row in rows:
        bad = {k: v for k, v in row.detail.items() if not _plain(v)}
        assert not bad, f"{row.action} keeps {bad}"
    # Only the last four digits of any phone are stored (roster and pickup adults alike).
    assert "5678" in tails and all(t is None or re.fullmatch(r"\d{4}", t) for t in tails)
