"""School notices as the people involved see them: the admin composes in chat, parents receive,
acknowledge and list their notices, and the admin reads who has not acknowledged."""

from __future__ import annotations

import time_machine
from sqlalchemy import delete, func, select

from storage.models import ConversationState, Lane, Notice, NoticeDelivery, Outbox, PersonRole
from tests.dialog import Chat, text_of, verify_dialog
from tests.notice_helpers import account_id, at, audits, button, inbox, reply_of, school_with_people


async def test_admin_sends_a_class_notice_that_asks_for_acknowledgement(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker)
    admin = people.admin
    with time_machine.travel(at(7, 10), tick=False):
        await verify_dialog(
            admin,
            [
                ("/notice", ["标题", "/cancel"]),
                ("秋游通知", ["正文", "**粗体**"]),
                ("周五秋游，请穿**运动鞋**。\n带上 <水壶> & 帽子", ["发给谁"]),
                ("button:n:t:class", ["请选择班级"]),
            ],
        )
        replies = await admin.press(button(admin.seen[-1:], "一年级(1)班"))
        assert "什么时候发送" in text_of(replies)
        await verify_dialog(
            admin,
            [
                ("button:n:w:now", ["已阅"]),
                ("button:n:h:24", ["紧急"]),
            ],
        )
        preview, summary = await admin.press("n:u:0")
        # The preview is the notice as parents will see it: Markdown-ish made safe.
        assert "<b>运动鞋</b>" in preview.text and "&lt;水壶&gt; &amp; 帽子" in preview.text
        assert "一年级(1)班全体家长" in summary.text
        assert "2 个已绑定账号" in summary.text and "另有 17 人尚未绑定" in summary.text
        assert "24 小时内" in summary.text
        done = text_of(await admin.press(button([summary], "确认发送")))
    assert "已发出：2 个账号" in done and "17 人尚未绑定" in done

    # Each parent of the class has one bulk message with the 「已阅」 button; other classes nothing.
    mother_rows = await inbox(sessionmaker, people.mother)
    assert [r.lane for r in mother_rows] == [Lane.BULK.value]
    notice = reply_of(mother_rows[0])
    assert "秋游通知" in notice.text and "2026-09-08 10:00" in notice.text
    ack = button([notice], "已阅")
    assert len(await inbox(sessionmaker, people.other)) == 1
    assert await inbox(sessionmaker, people.class2) == []

    with time_machine.travel(at(7, 12), tick=False):
        assert "已确认阅读《秋游通知》" in text_of(await people.mother.press(ack))
        # Pressed again (or the update replayed): refused, nothing changes, audited.
        assert "已确认过" in text_of(await people.mother.press(ack))
        # Another parent presses the mother's button (a forged payload): refused and audited.
        assert "按钮无效" in text_of(await people.other.press(ack))
        stranger = Chat(deps, user_id="5555", language="en")
        assert "not valid" in text_of(await stranger.press(ack))
        assert "no longer valid" in text_of(await stranger.press("n:a:99999999999999999999"))
    refused = await audits(sessionmaker, "notice.ack_refused")
    assert [r["reason"] for r in refused] == ["already", "not_yours"]
    # Bound to nobody: refused by role before any delivery is looked up (storage.authz). An id no
    # row can have is answered as an invalid button before that (handlers.dispatch).
    by_role = await audits(sessionmaker, "authz.refused")
    assert [r["attempted"] for r in by_role] == ["ack_notice"]
    assert len(await audits(sessionmaker, "notice.acked")) == 1

    # The admin's view: who has not acknowledged yet.
    listing = await admin.say("/notices")
    sent = await admin.press(button(listing, "已发通知（管理）"))
    assert "#1 秋游通知" in text_of(sent)
    report = text_of(await admin.press("n:v:1"))
    assert "已确认 1" in report and "尚未确认" in report
    assert "冯丽娟（高佳怡的母亲，一年级(1)班）" in report
    assert "董静" not in report.split("尚未确认")[1]


async def test_the_chat_flow_in_english_schedules_and_repeats(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker, admin_language="en")
    admin = people.admin
    with time_machine.travel(at(2, 10), tick=False):  # a Wednesday
        await verify_dialog(
            admin,
            [
                ("/notice", ["title"]),
                ("Weekly lunch menu", ["text"]),
                ("Rice, *soup* and fruit", ["Who is it for?"]),
                ("button:n:t:role", ["Choose a role"]),
                ("button:n:r:parent", ["When"]),
                ("button:n:w:cron", ["repeat rule", "0 16 * * fri"]),
                ("every friday", ["not understood"]),
                ("0 16 * * 5", ["press “Got it”"]),  # crontab numbers: 5 is Friday
                ("button:n:h:0", ["urgent"]),
            ],
        )
        _, summary = await admin.press("n:u:0")
        assert "every parent" in summary.text and "next 2026-09-04 16:00" in summary.text
        assert "Recurring notice #1 is set; next: 2026-09-04 16:00" in text_of(await admin.press("n:y:go"))

        await verify_dialog(
            admin,
            [
                ("/notice", ["title"]),
                ("Sports day", ["text"]),
                ("Bring water.", ["Who is it for?"]),
                ("button:n:t:grade", ["Choose a grade"]),
            ],
        )
        await admin.press(button(admin.seen[-1:], "二年级"))
        await verify_dialog(
            admin,
            [
                ("button:n:w:at", ["2026-09-02 10:00"]),
                ("2026-09-01 08:00", ["already passed"]),
                ("button:n:h:72", ["no longer valid"]),  # not the step for it
                ("2026-09-03 08:00", ["press “Got it”"]),
                ("Yes please", ["Please choose with the buttons"]),
                ("button:n:h:72", ["urgent"]),
            ],
        )
        _, summary = await admin.press("n:u:1")
        assert "parents of 二年级" in summary.text and "within 72 hours" in summary.text
        assert "Urgent: yes" in summary.text
        assert "Notice #2 will go out at 2026-09-03 08:00" in text_of(await admin.press("n:y:go"))
    async with sessionmaker() as session:
        statuses = list(await session.scalars(select(Notice.status).order_by(Notice.id)))
        assert statuses == ["recurring", "scheduled"]
        assert (
            await session.scalar(select(func.count()).select_from(Outbox).where(Outbox.lane == "bulk")) == 0
        )


async def test_only_admins_compose_and_cancel_always_works(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker)
    assert "只有学校管理员" in text_of(await people.mother.say("/notice"))
    assert "只有学校管理员" in text_of(await people.teacher.press("n:y:go"))
    assert "只有学校管理员" in text_of(await people.teacher.press("n:v:1"))
    assert "已经过期" in text_of(await people.admin.press("n:w:now"))  # no draft under way

    await verify_dialog(
        people.admin,
        [
            ("/notice", ["标题"]),
            ("家长会", ["正文"]),
            ("/cancel", ["已取消"]),
            ("button:n:y:go", ["已经过期"]),
        ],
    )
    await verify_dialog(
        people.admin,
        [("/notice", ["标题"]), ("家长会", ["正文"]), ("周四晚", ["发给谁"]), ("button:n:q:x", ["已取消"])],
    )
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Notice)) == 0

    # The role is read from the database at every step: taken away mid-draft, the draft ends.
    await verify_dialog(people.admin, [("/notice", ["标题"]), ("家长会", ["正文"])])
    async with sessionmaker.begin() as session:
        await session.execute(delete(PersonRole).where(PersonRole.role == "admin"))
    assert "只有学校管理员" in text_of(await people.admin.say("周四晚七点"))
    assert "只有学校管理员" in text_of(await people.admin.press("n:t:school"))
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ConversationState)) == 0


async def test_parents_list_and_open_their_notices(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker)
    with time_machine.travel(at(7, 9), tick=False):
        await people.admin.say("/notice")
        for turn in ("开学典礼", "周一 8:00 在操场举行。"):
            await people.admin.say(turn)
        for press in ("n:t:school", "n:w:now", "n:h:72", "n:u:0", "n:y:go"):
            await people.admin.press(press)
    listing = await people.mother.say("/notices")
    assert "开学典礼" in text_of(listing) and "请于 2026-09-10 09:00 前确认" in text_of(listing)
    opened = await people.mother.press(button(listing, "开学典礼"))
    assert "周一 8:00 在操场举行" in text_of(opened)
    mother = await account_id(sessionmaker, people.mother)
    async with sessionmaker() as session:
        mine = await session.scalar(select(NoticeDelivery.id).where(NoticeDelivery.account_id == mother))
    assert "已确认阅读" in text_of(await people.mother.press(button(opened, "已阅")))
    assert "✅ 已确认" in text_of(await people.mother.say("/notices"))
    # Someone else's notice cannot be opened by guessing its id.
    guessed = text_of(await people.class2.press(f"n:o:{mine}"))
    assert "周一 8:00" not in guessed and "按钮" in guessed


async def test_settings_in_english_and_for_strangers(deps, sessionmaker):
    people = await school_with_people(deps, sessionmaker)
    await people.other.say("/lang")
    await people.other.press("l:en")
    await verify_dialog(
        people.other,
        [
            ("/settings", ["as they come", "21:00–07:00", "Safety messages"]),
            ("button:p:d:2000", ["Saved", "one digest a day at 20:00"]),
            ("button:p:q:2200", ["22:00–07:00"]),
            ("button:p:d:0900", ["no longer valid"]),  # not a preset: a payload is never taken as a value
            ("/help", ["/notices", "/settings"]),
        ],
    )
    assert "/notice " in text_of(await people.admin.say("/help"))
    stranger = Chat(deps, user_id="7777", language="en")
    for request in ("/settings", "/notices"):
        assert "invite" in text_of(await stranger.say(request)).lower()
    assert "invite" in text_of(await stranger.press("p:d:now")).lower()
