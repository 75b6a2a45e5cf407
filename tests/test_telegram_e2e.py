"""The whole app (`bot.app.serve`) against a fake Telegram Bot API, over real HTTP on 127.0.0.1.

Each test is a story told by what each person sees in their Telegram chat.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from handlers.registry import command_menu
from storage.models import AccountBinding, OutboxStatus, Person, ProcessedUpdate, Student
from storage.models import School as SchoolRow
from tests.school import parent_code, person_code
from tests.telegram_app import SECRET, SECRET_HEADER, TOKEN, eventually, free_port, running_app

TEACHER, PARENT, STRANGER, VISITOR = 2001, 1001, 1002, 3003

pytestmark = pytest.mark.e2e


async def test_parent_joins_reads_the_terms_and_the_teacher_is_told(school, fake, tmp_path):
    teacher_code = await person_code(school.sessionmaker, "teacher", "T001", notice_accepted=True)
    code = await parent_code(school.sessionmaker, "S2026101", notice_accepted=True)
    async with running_app(school, fake, tmp_path):
        fake.push_text(TEACHER, f"/start {teacher_code}")
        assert "绑定成功" in (await fake.wait_for_messages(TEACHER, 1))[0]

        fake.push_text(PARENT, f"/start {code}")
        greeting = (await fake.wait_for_messages(PARENT, 1))[0]
        assert "绑定成功" in greeting and "曹若曦" in greeting and "母亲" in greeting
        assert {b.get("callback_data") for b in fake.sent_to(PARENT)[0].buttons} >= {"m:open", "t:show"}

        # The class teacher hears about it through the outbox sender, not as a direct reply.
        told = (await fake.wait_for_messages(TEACHER, 2))[1]
        assert "曹若曦" in told and "董静" in told
        await eventually(school.outbox_statuses, [OutboxStatus.SENT.value])

        fake.push_text(PARENT, "/terms")
        terms = (await fake.wait_for_messages(PARENT, 2))[1]
        assert "每月 200 元" in terms and "每次 12 元" in terms

        # The same terms behind the button under the greeting.
        fake.push_callback(PARENT, "t:show")
        assert "每月 200 元" in (await fake.wait_for_messages(PARENT, 3))[2]
        assert len(fake.calls_of("answerCallbackQuery")) == 1

        fake.push_text(STRANGER, f"/start {code}")
        assert "已经被使用" in (await fake.wait_for_messages(STRANGER, 1))[0]
    assert await school.count(AccountBinding) == 2  # the teacher and the parent, not the stranger


async def test_forged_buttons_odd_input_and_stickers_are_answered(school, fake, tmp_path):
    async with running_app(school, fake, tmp_path) as task:
        fake.push_callback(VISITOR, "zz:999")
        assert "按钮已失效" in (await fake.wait_for_messages(VISITOR, 1))[-1]
        fake.push_callback(VISITOR, "t:hack")
        assert "按钮已失效" in (await fake.wait_for_messages(VISITOR, 2))[-1]
        fake.push_text(VISITOR, "/nosuchcommand")
        assert "/nosuchcommand" in (await fake.wait_for_messages(VISITOR, 3))[-1]
        fake.push_text(VISITOR, "长" * 5000)
        assert "消息太长" in (await fake.wait_for_messages(VISITOR, 4))[-1]
        fake.push_sticker(VISITOR)
        assert "文字消息" in (await fake.wait_for_messages(VISITOR, 5))[-1]
        fake.push_photo(VISITOR, caption="看看这个")
        assert "文字消息" in (await fake.wait_for_messages(VISITOR, 6))[-1]
        fake.push_text(VISITOR, "/help")
        assert "我能做什么" in (await fake.wait_for_messages(VISITOR, 7))[-1]
        assert not task.done()
    assert len(fake.calls_of("answerCallbackQuery")) == 2


async def test_english_speaker_gets_english(school, fake, tmp_path):
    async with running_app(school, fake, tmp_path):
        fake.push_text(VISITOR, "/help", language_code="en")
        assert "What I can do" in (await fake.wait_for_messages(VISITOR, 1))[0]


async def test_command_list_is_published_per_language(school, fake, tmp_path):
    async with running_app(school, fake, tmp_path):
        pass
    published = {c.params.get("language_code"): c.params["commands"] for c in fake.calls_of("setMyCommands")}
    assert set(published) == {"zh", "en", None}
    for language_code, locale in (("zh", "zh_CN"), ("en", "en"), (None, "zh_CN")):
        expected = [{"command": c, "description": d} for c, d in command_menu(locale)]
        assert published[language_code] == expected
    # Polling: any webhook is removed first, and only the updates the bot answers are asked for.
    assert fake.calls_of("deleteWebhook")
    assert not fake.calls_of("setWebhook")
    assert set(fake.calls_of("getUpdates")[0].params["allowed_updates"]) == {"message", "callback_query"}


async def test_webhook_checks_the_secret_and_answers_after_the_effects(school, fake, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    code = await parent_code(school.sessionmaker, "S2026102", notice_accepted=True)
    async with running_app(school, fake, tmp_path, http_port=port, webhook_url=url, webhook_secret=SECRET):
        (registered,) = fake.calls_of("setWebhook")
        assert registered.params["url"] == url
        assert registered.params["secret_token"] == SECRET
        assert not fake.calls_of("getUpdates")  # webhook mode never polls

        update = fake.push_text(PARENT, f"/start {code}")
        good = {SECRET_HEADER: SECRET}
        async with aiohttp.ClientSession() as http:

            async def post(headers: dict[str, str] | None = None, **body: Any) -> int:
                async with http.post(url, headers=headers, **body) as response:
                    return response.status

            assert await post(json=update) == 403
            assert await post({SECRET_HEADER: "wrong-secret"}, json=update) == 403
            assert await post({SECRET_HEADER: ""}, json=update) == 403
            assert await post({**good, "Content-Type": "application/json"}, data=b"{not json") == 400
            assert await post(good, json=[1, 2, 3]) == 400
            assert await post(good, json={"hello": "world"}) == 400
            assert await post(good, json={"update_id": 5, "message": {"text": "no chat"}}) == 400
            assert await post(good, data=io.BytesIO(b"x" * (1024 * 1024 + 1))) == 413

            async def endless() -> AsyncIterator[bytes]:
                for _ in range(40):  # 1.25 MB, chunked: no Content-Length to trust
                    yield b"y" * 32768

            assert await post(good, data=endless()) == 413
            assert fake.messages_to(PARENT) == []

            assert await post(good, json=update) == 200
            # Answered only after processing: the reply is already at Telegram.
            (greeting,) = fake.messages_to(PARENT)
            assert "绑定成功" in greeting and "高佳怡" in greeting

            assert await post(good, json=update) == 200  # Telegram re-delivers after a timeout
            assert fake.messages_to(PARENT) == [greeting]

            # A button press: the spinner is stopped in the webhook's answer, not by another call.
            press = fake.push_callback(PARENT, "l:en")
            async with http.post(url, headers=good, json=press) as response:
                assert response.status == 200
                answer = await response.json()
            assert answer == {
                "method": "answerCallbackQuery",
                "callback_query_id": press["callback_query"]["id"],
            }
            assert not fake.calls_of("answerCallbackQuery")
    assert await school.count(AccountBinding) == 1
    assert await school.count(ProcessedUpdate) == 2


async def test_the_token_never_reaches_the_logs(school, fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    # PTB's own loggers too (a deployment holds them at INFO: tests/test_secrets_in_logs.py).
    for name in ("telegram", "telegram.ext.ExtBot"):
        caplog.set_level(logging.DEBUG, logger=name)
    code = await parent_code(school.sessionmaker, "S2026103", notice_accepted=True)
    async with running_app(school, fake, tmp_path):
        fake.push_text(PARENT, f"/start {code}")
        await fake.wait_for_messages(PARENT, 1)
        fake.fail_next("sendMessage", 502, "Bad Gateway")  # an error path logs too
        fake.push_text(PARENT, "/help")
        await fake.wait_for(lambda: len(fake.calls_of("sendMessage")) >= 2)
    secret_part = TOKEN.split(":", 1)[1]
    text = caplog.text  # formats every record, tracebacks included
    logged = [(r.getMessage(), r.exc_text or "") for r in caplog.records]
    # PTB's debug logs were on (they name each Bot API call; the URL holds the token).
    assert any("getUpdates" in message for message, _ in logged)
    assert any(r.name == "bot.telegram" and r.exc_info for r in caplog.records)  # the 502
    for message, exc_text in logged:
        assert secret_part not in message and secret_part not in exc_text
    assert secret_part not in text


async def test_names_with_markup_arrive_as_text_in_chats_and_pages(school, fake, tmp_path):
    """Names come from a roster file anyone at the school may have typed: markup in them is shown
    as the characters it is, in Telegram (whose HTML parser the fake applies) and on the web."""
    hostile = '<script>alert("x")</script> & <b>Bold</b> <a href="https://evil.example">'
    async with school.sessionmaker.begin() as session:
        student = await session.scalar(select(Student).where(Student.student_no == "S2026101"))
        guardian = await session.scalar(select(Person).where(Person.person_no == "S2026101-G1"))
        a_school = await session.scalar(select(SchoolRow))
        assert student is not None and guardian is not None and a_school is not None
        student.name, guardian.name, a_school.name = f"Kid {hostile}", f"Mum {hostile}", f"School {hostile}"
    teacher_code = await person_code(school.sessionmaker, "teacher", "T001", notice_accepted=True)
    code = await parent_code(school.sessionmaker, "S2026101", notice_accepted=True)
    port = free_port()
    async with running_app(school, fake, tmp_path, http_port=port):
        fake.push_text(TEACHER, f"/start {teacher_code}")
        await fake.wait_for_messages(TEACHER, 1)
        fake.push_text(PARENT, f"/start {code}")
        greeting = (await fake.wait_for_messages(PARENT, 1))[0]  # accepted by Telegram's parser
        assert f"Kid {hostile}" in greeting and f"Mum {hostile}" in greeting  # as plain text
        told = (await fake.wait_for_messages(TEACHER, 2))[1]  # through the outbox, too
        assert f"Kid {hostile}" in told
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/terms") as r:
            page = await r.text()
    assert "School &lt;script&gt;alert(" in page
    assert "<script>alert" not in page and 'href="https://evil.example"' not in page
