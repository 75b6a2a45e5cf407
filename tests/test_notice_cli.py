"""`afterschool notice ...` run as a school would run it: the real console script in a subprocess,
against the SQLite file the parents' chats use."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from pathlib import Path

from sqlalchemy import select

from handlers.dialog import Links, Reply
from handlers.dispatch import Deps
from storage.db import create_engine, create_sessionmaker
from storage.models import Outbox
from tests.dialog import Chat, text_of
from tests.school import EXAMPLES, parent_code


async def afterschool(tmp_path: Path, *args: str, locale: str = "zh_CN") -> tuple[int, str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_USERNAME")
    }
    env.update(DATA_DIR=str(tmp_path / "data"), DEFAULT_LOCALE=locale)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_an_admin_sends_lists_reports_and_stops_notices(tmp_path: Path) -> None:
    code, _, err = await afterschool(tmp_path, "import-roster", str(EXAMPLES / "roster.csv"))
    assert code == 0, err
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'afterschool.sqlite3'}")
    sessionmaker = create_sessionmaker(engine)
    deps = Deps(sessionmaker, Links("http://school.test"))
    mother, other = Chat(deps, user_id="1001"), Chat(deps, user_id="1002")
    await mother.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    await other.say(f"/start {await parent_code(sessionmaker, 'S2026102')}")

    menu = tmp_path / "menu.md"
    menu.write_text("# 本周菜单\n周一：**米饭**、青菜\n周二：面条\n", encoding="utf-8")
    (tmp_path / "菜单 第1周.pdf").write_bytes(b"%PDF-1.4 menu")
    code, out, err = await afterschool(
        tmp_path, "notice", "send", str(menu), "--to", "class:一年级(1)班", "--ack-within", "48",
        "--attach", "菜单 第1周.pdf",
    )  # fmt: skip
    assert code == 0, err
    assert "通知 #1 已发出：2 个账号" in out and "17 人尚未绑定" in out

    async with sessionmaker() as session:
        rows = list(await session.scalars(select(Outbox).order_by(Outbox.id)))
    sent = [Reply.from_payload(r.payload) for r in rows if r.lane == "bulk"]
    assert len(sent) == 2 and "<b>米饭</b>" in sent[0].text
    document = sent[0].document
    assert document is not None and document.filename == "菜单 第1周.pdf"
    assert document.resolve(tmp_path / "data").read_bytes() == b"%PDF-1.4 menu"
    ack = next(b.payload for reply in sent for row in reply.buttons for b in row if b.payload)
    assert "已确认阅读《本周菜单》" in text_of(await mother.press(ack))

    code, out, err = await afterschool(
        tmp_path,
        "notice",
        "send",
        str(menu),
        "--to",
        "role:parent",
        "--cron",
        "0 16 * * fri",
        "--title",
        "每周菜单",
    )
    assert code == 0 and "周期通知 #2 已设定（0 16 * * fri）" in out, err

    for args, problem in [
        (("--to", "school", "--at", "2020-01-01 08:00"), "已经过去了"),
        (("--to", "grade:九年级"), "本校没有“九年级”这个年级"),
        (("--to", "everyone"), "无法识别"),
    ]:
        code, _, err = await afterschool(tmp_path, "notice", "send", str(menu), *args)
        assert code == 2 and problem in err

    csv_path = tmp_path / "report.csv"
    code, out, err = await afterschool(tmp_path, "notice", "report", "1", "--csv", str(csv_path), locale="en")
    assert code == 0, err
    assert "2 accounts: delivered 0, waiting 2" in out and "acknowledged 1" in out
    assert "冯丽娟 (母亲 of 高佳怡, 一年级(1)班)" in out and "董静" not in out
    with csv_path.open(encoding="utf-8-sig") as fh:
        table = list(csv.DictReader(fh))
    assert [r["status"] for r in table].count("not_joined") == 17
    assert {r["name"]: bool(r["acknowledged_at"]) for r in table if r["status"] != "not_joined"} == {
        "董静": True,
        "冯丽娟": False,
    }

    code, out, _ = await afterschool(tmp_path, "notice", "list")
    assert out.index("#2") < out.index("#1") and "周期发送中" in out
    code, out, _ = await afterschool(tmp_path, "notice", "cancel", "2")
    assert code == 0 and "已停止通知 #2" in out
    code, _, err = await afterschool(tmp_path, "notice", "cancel", "1")
    assert code == 2 and "无法停止" in err
    await engine.dispose()
