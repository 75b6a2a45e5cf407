"""The service agreement: placed → read → sign with the registered name → kept intact; new terms
that change it ask parents to sign again, while the old one holds until they take effect."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import time_machine
import yaml
from sqlalchemy import select, update

from bot import admin
from storage import agreements
from storage.clock import utcnow
from storage.models import Agreement, Application
from tests.dialog import Chat, payloads, text_of
from tests.school import EXAMPLES, load_example_school, parent_code, person_code
from tests.test_enrollment_flow import outbox_buttons, outbox_texts, setup_groups


async def placed_parent(deps, sessionmaker, student_no: str = "S2026101") -> tuple[Chat, int]:
    """A parent whose child has been approved and placed (the steps tested in enrollment)."""
    await load_example_school(sessionmaker)
    await setup_groups(sessionmaker)
    admin_chat = Chat(deps, user_id="admin")
    await admin_chat.say(f"/start {await person_code(sessionmaker, 'admin', 'A001')}")
    parent = Chat(deps, user_id="parent")
    await parent.say(f"/start {await parent_code(sessionmaker, student_no)}")
    await parent.say("/apply")
    for press in ("a:n", "a:o:noon", "a:n", "a:n", "a:n", "a:w:n", "a:ok"):
        await parent.press(press)
    async with sessionmaker.begin() as session:
        await session.execute(update(Application).values(status="class_approved"))
    await admin_chat.press("r:sa:1")
    await admin_chat.press(next(p for p in payloads(await admin_chat.say("/place")) if p.startswith("q:ok")))
    return parent, 1


async def read_all(parent: Chat, app_id: int) -> str:
    replies = await parent.press(f"g:r:{app_id}")
    text = text_of(replies)
    while (more := [p for p in payloads(replies) if p.startswith("g:p:") and int(p.split(":")[3]) > 1]) and (
        not any(p.startswith("g:s:") for p in payloads(replies))
    ):
        replies = await parent.press(more[-1])
        text += text_of(replies)
    return text


async def test_placed_parent_reads_signs_with_a_wrong_then_right_name(deps, sessionmaker):
    parent, app_id = await placed_parent(deps, sessionmaker)
    assert "g:r:1" in await outbox_buttons(sessionmaker)  # the "placed" message asks to sign
    text = await read_all(parent, app_id)
    for fact in (
        "课后服务协议书",
        "曹若曦",
        "一年级作业辅导",
        "午间看护",
        "接送规则",
        "甲方责任",
        "乙方责任",
    ):
        assert fact in text, fact

    assert "输入您在学校登记的姓名" in text_of(await parent.press(f"g:s:{app_id}"))
    mismatch = text_of(await parent.say("董 晶"))
    assert "不一致" in mismatch and "董静" in mismatch
    done = text_of(await parent.say(" 董 静 "))  # spaces do not matter
    assert "已签署" in done

    async with sessionmaker() as session:
        row = (await session.scalars(select(Agreement))).one()
        assert row.sha256 == agreements.digest(row.text)
        assert "曹若曦" in row.text and row.platform == "test" and row.signer_person_id
        assert (await agreements.verify(session, row.id)).intact
    listed = text_of(await parent.say("/agreement"))
    assert row.sha256[:16] in listed
    assert "没有需要签署" in text_of(await parent.press(f"g:r:{app_id}"))


async def test_tampering_with_a_stored_agreement_is_detected(deps, sessionmaker):
    parent, app_id = await placed_parent(deps, sessionmaker)
    await read_all(parent, app_id)
    await parent.press(f"g:s:{app_id}")
    await parent.say("董静")
    async with sessionmaker.begin() as session:
        await session.execute(update(Agreement).values(text=Agreement.text + " 每月 0 元"))
    async with sessionmaker() as session:
        check = await agreements.verify(session, 1)
    assert check is not None and not check.intact and check.computed != check.stored


async def test_someone_else_cannot_sign_and_declining_withdraws(deps, sessionmaker):
    parent, app_id = await placed_parent(deps, sessionmaker)
    stranger = Chat(deps, user_id="stranger")
    await stranger.say(f"/start {await parent_code(sessionmaker, 'S2026202')}")
    assert "按钮已失效" in text_of(await stranger.press(f"g:r:{app_id}"))
    confirm = await parent.press(f"g:d:{app_id}")
    assert "完全是您的自由选择" in text_of(confirm)
    await parent.press(f"g:dy:{app_id}")
    async with sessionmaker() as session:
        assert (await session.get(Application, app_id)).status == "withdrawn"


async def test_new_terms_that_change_fees_ask_to_sign_again(deps, sessionmaker, tmp_path: Path):
    parent, app_id = await placed_parent(deps, sessionmaker)
    await read_all(parent, app_id)
    await parent.press(f"g:s:{app_id}")
    await parent.say("董静")

    data = yaml.safe_load((EXAMPLES / "terms.yaml").read_text("utf-8"))
    data["fees"]["per_month"] = 220
    starts = utcnow().date() + timedelta(days=30)
    data["effective_from"] = starts.isoformat()
    new_terms = tmp_path / "terms.yaml"
    new_terms.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    await admin.publish_terms_file(sessionmaker, new_terms)

    assert "重新签署" in (await outbox_texts(sessionmaker))[-1]
    async with sessionmaker() as session:
        assert [a.id for a in await agreements.not_resigned(session, 1)] == [app_id]
        # Until the new terms take effect, the old agreement still holds.
        assert await agreements.current(session, app_id, utcnow()) is not None
    with time_machine.travel(utcnow() + timedelta(days=31), tick=False):
        async with sessionmaker() as session:
            assert await agreements.current(session, app_id, utcnow()) is None

    text = await read_all(parent, app_id)
    assert "每月 220 元" in text
    await parent.press(f"g:s:{app_id}")
    assert "已签署" in text_of(await parent.say("董静"))
    async with sessionmaker() as session:
        assert await agreements.not_resigned(session, 1) == []
        assert len(list(await session.scalars(select(Agreement)))) == 2  # the old one is kept


def test_agreement_pages_keep_paragraphs_whole():
    from handlers.agreement import pages_of

    text = "\n\n".join(f"第{i}段" + "字" * 700 for i in range(10))
    pages = pages_of(text, 3000)
    assert all(len(p) <= 3000 for p in pages) and "\n\n".join(pages) == text


async def test_no_child_is_on_a_service_day_roster_without_a_signed_agreement(deps, sessionmaker):
    from datetime import date

    from storage import rosters
    from storage.models import ServiceGroup

    parent, app_id = await placed_parent(deps, sessionmaker)
    monday = date(2026, 12, 7)
    async with sessionmaker() as session:
        group = (
            await session.scalars(select(ServiceGroup).where(ServiceGroup.name == "一年级作业辅导"))
        ).one()
        before = await rosters.day_roster(session, group, monday, utcnow())
    assert before.expected == [] and [line.name for line in before.not_signed] == ["曹若曦"]

    await read_all(parent, app_id)
    await parent.press(f"g:s:{app_id}")
    await parent.say("董静")
    async with sessionmaker() as session:
        after = await rosters.day_roster(session, group, monday, utcnow())
        sunday = await rosters.day_roster(session, group, date(2026, 12, 6), utcnow())
    assert [line.name for line in after.expected] == ["曹若曦"] and after.not_signed == []
    assert sunday.expected == []  # not a service day of the group


async def test_verify_and_export_from_the_command_line(tmp_path: Path, links):
    from handlers.dispatch import Deps
    from storage.db import create_engine, create_sessionmaker, migrate
    from tests.test_cli import afterschool

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'afterschool.sqlite3'}")
    await migrate(engine)
    sessionmaker = create_sessionmaker(engine)
    deps = Deps(sessionmaker=sessionmaker, links=links)
    parent, app_id = await placed_parent(deps, sessionmaker)
    await read_all(parent, app_id)
    await parent.press(f"g:s:{app_id}")
    await parent.say("董静")

    assert afterschool(tmp_path, "agreements", "unsigned").stdout.count("：未签署") == 0
    intact = afterschool(tmp_path, "agreements", "verify", "1")
    assert intact.returncode == 0 and "完好" in intact.stdout
    exported = afterschool(tmp_path, "agreements", "export", "--dir", "records")
    assert exported.returncode == 0, exported.stderr
    html = next((tmp_path / "records").glob("agreement-S2026101-*.html")).read_text("utf-8")
    async with sessionmaker() as session:
        sha = (await session.get(Agreement, 1)).sha256
    assert "曹若曦" in html and sha in html and "<b>" in html

    async with sessionmaker.begin() as session:
        await session.execute(update(Agreement).values(text=Agreement.text + "<script>x</script>"))
    tampered = afterschool(tmp_path, "agreements", "verify", "1", locale="en")
    assert tampered.returncode == 1 and "altered" in tampered.stdout
    afterschool(tmp_path, "agreements", "export", "--dir", "records")
    html = next((tmp_path / "records").glob("agreement-S2026101-*.html")).read_text("utf-8")
    assert "<script>x" not in html  # a tampered text cannot inject markup into the record
    await engine.dispose()


async def test_the_parent_receives_a_copy_they_can_open(deps, sessionmaker, tmp_path: Path):
    from dataclasses import replace

    from storage import accounts

    deps = replace(deps, files_dir=tmp_path)
    parent, app_id = await placed_parent(deps, sessionmaker)
    await read_all(parent, app_id)
    await parent.press(f"g:s:{app_id}")
    done = (await parent.say("董静"))[0]
    assert done.document is not None and done.document.filename.endswith(".html")
    html = done.document.resolve(tmp_path).read_text("utf-8")
    assert "曹若曦" in html and "课后服务协议书" in html
    async with sessionmaker() as session:
        row = (await session.scalars(select(Agreement))).one()
        assert row.sha256 in html
        mine = await accounts.find_account(session, "test", "parent")
        assert mine and await agreements.document_visible_to(session, mine.id, done.document.path)
    listed = await parent.say("/agreement")
    copy = next(p for p in payloads(listed) if p.startswith("g:c:"))
    again = (await parent.press(copy))[0]
    assert again.document is not None and again.document.path == done.document.path
    stranger = Chat(deps, user_id="someone")
    await stranger.say(f"/start {await parent_code(sessionmaker, 'S2026202')}")
    assert (await stranger.press(copy))[0].document is None
    async with sessionmaker() as session:
        other = await accounts.find_account(session, "test", "someone")
        assert other and not await agreements.document_visible_to(session, other.id, done.document.path)
