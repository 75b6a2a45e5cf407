"""/mydata and /delete_me end to end through the dialog core: a parent gets both files; asks to be
erased; a forged approval is refused; an admin approves; the data is gone except what the law
keeps, and the parent was told."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from handlers.dialog import Reply
from handlers.dispatch import Deps
from storage import privacy
from storage.models import (
    Absence,
    AccountBinding,
    Agreement,
    Application,
    AuditLog,
    ErasureRequest,
    Guardianship,
    Outbox,
    Person,
    PickupAdult,
    Student,
)
from tests.dialog import Chat, text_of
from tests.school import load_example_school, parent_code, person_code
from tests.test_handover import signed_family
from tests.test_photos import web_chat


@pytest.fixture
def filed(deps: Deps, tmp_path: Path) -> Deps:
    return replace(deps, files_dir=tmp_path / "data")


def files_of(deps: Deps, replies: list[Reply]) -> dict[str, str]:
    assert deps.files_dir is not None
    return {
        r.document.filename: r.document.resolve(deps.files_dir).read_text("utf-8")
        for r in replies
        if r.document
    }


async def texts_to(sessionmaker, person_name: str | None = None) -> list[str]:
    async with sessionmaker() as session:
        return [r.payload["text"] for r in await session.scalars(select(Outbox).order_by(Outbox.id))]


async def test_a_parent_gets_their_data_as_a_page_and_as_json(filed: Deps, sessionmaker):
    parent, staff, _student = await signed_family(filed, sessionmaker)
    replies = await parent.say("/mydata")
    assert "董静" in replies[0].text and "曹若曦" in replies[0].text and "匿名" in replies[0].text
    files = files_of(filed, replies)
    assert set(files) == {"mydata.html", "mydata.json"}
    data = json.loads(files["mydata.json"])
    assert data["format"] == privacy.FORMAT and data["notes"]["note_anonymous"]
    assert [p["name"] for p in data["tables"]["person"]] == ["董静"]
    assert {a["name"] for a in data["tables"]["pickup_adult"]} == {"王秀兰"}
    assert data["tables"]["agreement"][0]["sha256"] in files["mydata.html"]
    for fact in ("我的数据", "曹若曦", "王秀兰", "已签署的协议书", "匿名意见"):
        assert fact in files["mydata.html"], fact

    # A second export replaces the first: only one copy of everything lies on disk.
    again = files_of(filed, await parent.say("/mydata"))
    assert filed.files_dir is not None
    assert len(list(filed.files_dir.glob("mydata/*/*/mydata.json"))) == 1 and again

    assert "教职工" in text_of(await staff.say("/mydata"))
    assert "/start" in text_of(await Chat(filed, user_id="stranger").say("/mydata"))


async def test_erasure_asked_forged_refused_approved_and_told(filed: Deps, sessionmaker):
    parent, _staff, _student = await signed_family(filed, sessionmaker)
    await parent.say("/mydata")
    admin = Chat(filed, user_id="admin")  # bound as A001 by placed_parent
    explained = await parent.say("/delete_me")
    assert "已签署的协议书：1" in text_of(explained) and "还有其他监护人" in text_of(explained)
    assert "不，保留" in str(explained[0].buttons)
    assert "没有做任何更改" in text_of(await parent.press("x:n"))
    assert "已提交" in text_of(await parent.press("x:y"))
    assert "还在等待" in text_of(await parent.say("/delete_me"))
    assert "还在等待" in text_of(await parent.press("x:y"))
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count(ErasureRequest.id))) == 1
        request = (await session.scalars(select(ErasureRequest))).one()
        asked = (await session.scalars(select(Outbox).order_by(Outbox.id.desc()))).first()
    assert "数据删除申请" in asked.payload["text"] and "董静" in asked.payload["text"]
    approve = f"x:ok:{request.id}"
    assert approve in [b["payload"] for row in asked.payload["buttons"] for b in row]

    # A parent forging the admin's button is refused, and so is a request id that does not exist.
    assert "管理员" in text_of(await parent.press(approve))
    assert "按钮已失效" in text_of(await admin.press("x:ok:999999"))
    async with sessionmaker() as session:
        assert (await session.get(ErasureRequest, request.id)).status == "pending"

    done = text_of(await admin.press(approve))
    assert "已删除" in done and "已签署的协议书 1" in done
    assert "已经处理过" in text_of(await admin.press(approve))

    async with sessionmaker() as session:
        person = (await session.scalars(select(Person).where(Person.person_no.like("erased-%")))).one()
        assert person.name == privacy.ERASED_NAME and person.phone_tail is None
        for model in (AccountBinding, Guardianship):
            assert await session.scalar(select(func.count()).where(model.person_id == person.id)) == 0
        # Kept by law, still pointing at the anonymised person.
        agreement = (await session.scalars(select(Agreement))).one()
        assert agreement.signer_person_id == person.id
        # 曹刚 is still the child's guardian: the child's list and application stay, unlinked from her.
        assert [a.created_by for a in await session.scalars(select(PickupAdult))] == [None]
        assert (await session.scalars(select(Application))).one().status == "placed"
        request = await session.get(ErasureRequest, request.id)
        assert request.status == "done" and request.person_id is None
        assert request.kept == {"agreements": 1, "applications": 1}
        erased = (await session.scalars(select(AuditLog).where(AuditLog.action == "privacy.erased"))).one()
        assert set(erased.detail) <= {"person", "children", "agreements", "applications"}
        told = (await session.scalars(select(Outbox).order_by(Outbox.id.desc()))).first()
        # The only message left for the parent's chat is the outcome; older copies are gone.
        mine = list(await session.scalars(select(Outbox).where(Outbox.account_id == told.account_id)))
    assert "删除了您的数据" in told.payload["text"] and len(mine) == 1
    assert filed.files_dir is not None and not list(filed.files_dir.glob("mydata/*/*/*"))
    assert "/start" in text_of(await parent.say("/mydata"))


async def test_the_only_guardian_takes_the_childs_service_data_with_them(filed: Deps, sessionmaker):
    await load_example_school(sessionmaker)
    admin = Chat(filed, user_id="admin")
    await admin.say(f"/start {await person_code(sessionmaker, 'admin', 'A001')}")
    parent = Chat(filed, user_id="mum", language="en")
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026110')}")  # 唐玲, the only guardian
    async with sessionmaker() as session:
        child = (await session.scalars(select(Student).where(Student.student_no == "S2026110"))).one()
    await parent.say("/pickup")
    await parent.press(f"k:add:{child.id}")
    for text in ("王秀兰", "外婆", "13812345678"):
        await parent.say(text)
    await parent.say("/absent")
    await parent.press("b:d:1")
    await parent.say("fever")
    explained = text_of(await parent.say("/delete_me"))
    assert "only registered guardian" in explained and "袁梓睿" in explained
    await parent.press("x:y")
    async with sessionmaker() as session:
        request = (await session.scalars(select(ErasureRequest))).one()
    refused = text_of(await admin.press(f"x:no:{request.id}"))
    assert "已拒绝" in refused
    assert "has not agreed" in (await texts_to(sessionmaker))[-1]
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count(PickupAdult.id))) == 1

    await parent.press("x:y")
    async with sessionmaker() as session:
        request = (
            await session.scalars(select(ErasureRequest).where(ErasureRequest.status == "pending"))
        ).one()
    assert "已删除" in text_of(await admin.press(f"x:ok:{request.id}"))
    async with sessionmaker() as session:
        for model in (PickupAdult, Absence, Guardianship):
            count = await session.scalar(
                select(func.count()).select_from(model).where(model.student_id == child.id)
            )
            assert count == 0, model.__name__
        assert await session.get(Student, child.id) is not None  # the school's register stays
    assert "erased your data" in (await texts_to(sessionmaker))[-1]


async def test_staff_cannot_ask_to_be_erased_and_buttons_are_checked(filed: Deps, sessionmaker):
    await load_example_school(sessionmaker)
    teacher = Chat(filed, user_id="t")
    await teacher.say(f"/start {await person_code(sessionmaker, 'teacher', 'T005')}")
    assert "人事记录" in text_of(await teacher.say("/delete_me"))
    assert "人事记录" in text_of(await teacher.press("x:y"))
    assert "管理员" in text_of(await teacher.press("x:ok:1"))
    assert "按钮已失效" in text_of(await teacher.press("x:zz"))


async def test_the_web_chat_downloads_both_files_for_its_own_chat_only(
    deps: Deps, sessionmaker, tmp_path: Path
):
    await load_example_school(sessionmaker)
    data_dir = tmp_path / "data"
    filed = replace(deps, files_dir=data_dir)
    parent = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    other = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        async with web_chat(filed, data_dir) as (_chat, base):
            for browser in (parent, other):
                async with browser.get(f"{base}/chat") as page:
                    assert page.status == 200
            async with parent.ws_connect(f"{base}/chat/ws") as ws:
                code = await parent_code(sessionmaker, "S2026101", notice_accepted=True)
                await ws.send_json({"type": "text", "text": f"/start {code}"})
                await ws.receive_json(timeout=10)
                await ws.send_json({"type": "text", "text": "/mydata"})
                frames = [await ws.receive_json(timeout=10) for _ in range(2)]
            documents = {f["document"]["name"]: base + f["document"]["url"] for f in frames}
            assert set(documents) == {"mydata.html", "mydata.json"}
            async with parent.get(documents["mydata.json"]) as got:
                assert got.status == 200 and got.headers["Content-Disposition"].startswith("attachment;")
                assert json.loads(await got.read())["tables"]["student"][0]["name"] == "曹若曦"
            async with other.get(documents["mydata.json"]) as refused:
                assert refused.status == 404
    finally:
        await parent.close()
        await other.close()
