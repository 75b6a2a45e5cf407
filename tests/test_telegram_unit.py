"""The Telegram adapter's parts: message splitting, delivery results, and updates it must not answer."""

from __future__ import annotations

import re
import traceback
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from telegram import Message
from telegram.error import BadRequest, EndPointNotFound, InvalidToken

from bot.channels import Status
from bot.config import Settings
from bot.telegram import TelegramAdapter, event_for, split_message
from handlers.dialog import Button, Reply
from handlers.dispatch import Deps
from tests.fakebotapi import FakeBotApi

TOKEN = "987654321:AAUnitFakeTokenOnlyForTests_abc-789"
TAG = re.compile(r"<(/?)([a-z-]+)[^>]*>")


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def balanced(html: str) -> bool:
    stack: list[str] = []
    for closing, name in TAG.findall(html):
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack


# -- split_message --------------------------------------------------------------------------------


def test_a_short_message_is_one_part():
    assert split_message("你好") == ["你好"]
    assert split_message("x" * 4096) == ["x" * 4096]


def test_long_text_is_cut_between_paragraphs():
    paragraphs = [f"第{i}段。" + "字" * 1500 for i in range(6)]
    text = "\n\n".join(paragraphs)
    parts = split_message(text)
    assert len(parts) == 3
    assert all(units(p) <= 4096 for p in parts)
    assert "\n\n".join(parts) == text  # whole paragraphs; nothing lost but the cut separators
    assert parts[0] == "\n\n".join(paragraphs[:2])


def test_a_long_paragraph_is_cut_between_lines_then_hard():
    lines = ["行" * 1000 for _ in range(5)]
    parts = split_message("\n".join(lines))
    assert parts == ["\n".join(lines[:4]), lines[4]]
    assert split_message("a" * 10_000) == ["a" * 4096, "a" * 4096, "a" * 1808]


def test_limit_counts_utf16_units_like_telegram():
    parts = split_message("😀" * 3000)  # each emoji is 2 units
    assert [units(p) for p in parts] == [4096, 1904]


def test_tags_and_entities_are_never_cut_and_stay_balanced():
    text = "<b>" + "粗" * 5000 + "</b>\n" + '<a href="https://example.org/x">链接</a>' * 200 + "&amp;" * 900
    parts = split_message(text, limit=1000)
    assert len(parts) > 5
    for part in parts:
        assert units(part) <= 1000
        assert balanced(part), part[:80]
        assert not re.search(r"&[a-z#0-9]*$", part), "an entity was cut"
    assert parts[1].startswith("<b>") and parts[0].endswith("</b>")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet=st.sampled_from("ab字😀 \n"), max_size=400), max_size=30),
    st.integers(min_value=8, max_value=300),
)
def test_no_part_over_the_limit_and_nothing_lost(chunks, limit):
    text = "\n".join(chunks)
    parts = split_message(text, limit)
    assert all(units(p) <= limit for p in parts)
    squeeze = re.compile(r"\s")
    assert squeeze.sub("", "".join(parts)) == squeeze.sub("", text)


# -- the adapter against the fake Bot API ---------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(token=TOKEN) as api:
        yield api


def make_settings(fake: FakeBotApi, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "telegram_bot_token": TOKEN,
        "telegram_api_base_url": fake.url + "/",
        "telegram_bot_username": None,
        "webhook_url": None,
        "webhook_secret": None,
        "default_locale": "zh_CN",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type,call-arg]


@pytest.fixture
async def adapter(fake: FakeBotApi, deps: Deps) -> AsyncIterator[TelegramAdapter]:
    deps.links.bot_username = None
    telegram = TelegramAdapter(make_settings(fake), deps, wake=lambda: None)
    await telegram.start()
    yield telegram
    await telegram.stop()


async def test_start_learns_the_username_and_publishes_commands(adapter, fake, deps):
    assert deps.links.bot_username == "afterschool_test_bot"
    assert set(fake.commands) == {("default", "zh"), ("default", "en"), ("default", "")}


async def test_a_long_reply_goes_in_parts_with_the_buttons_under_the_last(adapter, fake):
    text = "\n\n".join("段" * 3000 for _ in range(3))
    reply = Reply(text, ((Button("菜单", "m:open"), Button("网页", url="https://school.example.cn/terms")),))
    assert (await adapter.deliver("42", reply)).status is Status.SENT
    sent = fake.sent_to(42)
    assert [len(s.text) for s in sent] == [3000, 3000, 3000]
    assert [s.reply_markup is None for s in sent] == [True, True, False]
    assert [b.get("callback_data") or b.get("url") for b in sent[-1].buttons] == [
        "m:open",
        "https://school.example.cn/terms",
    ]


async def test_a_button_to_a_private_address_is_dropped_not_the_message(adapter, fake):
    reply = Reply("条款", ((Button("网页", url="http://127.0.0.1:8080/terms"), Button("菜单", "m:open")),))
    assert (await adapter.deliver("42", reply)).status is Status.SENT
    assert [b.get("callback_data") for b in fake.sent_to(42)[0].buttons] == ["m:open"]


async def test_delivery_errors_tell_the_sender_what_to_do(adapter, fake):
    reply = Reply("通知")
    fake.block(7)
    blocked = await adapter.deliver("7", reply)
    assert blocked.status is Status.UNREACHABLE and "blocked" in blocked.error

    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    limited = await adapter.deliver("8", reply)
    assert (limited.status, limited.retry_after) == (Status.RETRY, 7.0)

    fake.fail_next("sendMessage", 400, "Bad Request: chat not found")
    bad = await adapter.deliver("9", reply)
    assert (bad.status, bad.error) == (Status.FAILED, "Chat not found")

    fake.fail_next("sendMessage", 502, "Bad Gateway")
    assert (await adapter.deliver("10", reply)).status is Status.RETRY

    assert (await adapter.deliver("11", reply)).status is Status.SENT


async def test_group_and_channel_updates_are_not_answered(adapter, fake):
    group = {"id": -100123, "type": "supergroup", "title": "一年级(1)班家长群"}
    user = {"id": 55, "is_bot": False, "first_name": "家长"}
    fake.push({"message": {"message_id": 1, "from": user, "chat": group, "date": 1, "text": "/help"}})
    fake.push({"channel_post": {"message_id": 2, "chat": {"id": -100999, "type": "channel"}, "date": 1}})
    fake.push_text(55, "/help")
    await fake.wait_for_messages(55, 1)
    assert [s.chat_id for s in fake.sent] == ["55"]


async def test_webhook_mode_needs_a_good_secret(fake, deps):
    url = "https://bot.example.cn/telegram/webhook"
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        TelegramAdapter(make_settings(fake, webhook_url=url), deps, wake=lambda: None)
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        TelegramAdapter(
            make_settings(fake, webhook_url=url, webhook_secret="has spaces!"), deps, wake=lambda: None
        )


async def test_a_wrong_token_fails_start_without_showing_it_and_stop_is_still_safe(fake, deps):
    wrong = "123:wrong-token-xyz"
    telegram = TelegramAdapter(make_settings(fake, telegram_bot_token=wrong), deps, lambda: None)
    with pytest.raises(InvalidToken, match="TELEGRAM_BOT_TOKEN") as failure:
        await telegram.start()
    assert "wrong-token" not in "".join(traceback.format_exception(failure.value))
    await telegram.stop()
    await telegram.stop()


async def test_the_fake_answers_the_methods_ptb_sends(adapter, fake):
    """The fake itself, driven by PTB: files as multipart, edits, webhook info, unknown methods."""
    bot = adapter.application.bot
    message = await bot.send_message(5, "<b>旧</b>", parse_mode="HTML")
    edited = await bot.edit_message_text(
        "<i>新</i>", chat_id=5, message_id=message.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, Message) and edited.text == "新"
    await bot.send_photo(5, photo=b"\x89PNG fake bytes", caption="照片")
    await bot.send_document(5, document=b"%PDF fake", filename="协议.pdf")
    assert [s.method for s in fake.sent_to(5)] == ["sendMessage", "sendPhoto", "sendDocument"]
    assert fake.calls_of("sendDocument")[0].params["document"]["filename"] == "协议.pdf"
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.delete_my_commands(language_code="en")
    assert ("default", "en") not in fake.commands
    with pytest.raises(BadRequest, match="Can't parse entities"):
        await bot.send_message(5, "<b>没有结束", parse_mode="HTML")
    with pytest.raises(BadRequest, match="too long"):
        await bot.send_message(5, "长" * 4097)
    with pytest.raises(EndPointNotFound):  # Telegram answers 404 for a method it does not know
        await bot.do_api_request("noSuchMethod")
    assert fake.calls[-1].method == "noSuchMethod"


# -- reading updates ------------------------------------------------------------------------------

PARENT = {"id": 501, "is_bot": False, "first_name": "妈妈", "language_code": "zh-hans"}
PRIVATE = {"id": 501, "type": "private", "first_name": "妈妈"}


def test_a_parents_message_and_button_become_events_as_telegram_sends_them() -> None:
    text = {
        "update_id": 7,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": PRIVATE,
            "from": PARENT,
            "text": "/start@afterschool_bot abc",
        },
    }
    event = event_for(text)
    assert event is not None
    assert (event.user_id, event.chat_id, event.command, event.args) == ("501", "501", "start", "abc")
    assert (event.language, event.update_id) == ("zh-hans", 7)
    button = {
        "update_id": 8,
        "callback_query": {
            "id": "q1",
            "from": PARENT,
            "chat_instance": "c",
            "data": "a:d:mon",
            "message": {"message_id": 2, "date": 0, "chat": PRIVATE},
        },
    }
    event = event_for(button)
    assert event is not None and event.button == "a:d:mon" and event.chat_id == "501"
    photo = {
        "update_id": 9,
        "message": {
            "message_id": 3,
            "date": 0,
            "chat": PRIVATE,
            "from": PARENT,
            "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}],
            "caption": "作业",
        },
    }
    event = event_for(photo)
    assert event is not None and (event.media, event.text) == ("photo", "作业")


def test_updates_the_bot_must_not_answer_are_none() -> None:
    group = {"id": -100, "type": "supergroup", "title": "一年级家长群"}
    in_group = {
        "update_id": 1,
        "message": {"message_id": 1, "date": 0, "chat": group, "from": PARENT, "text": "/status"},
    }
    channel_post = {"update_id": 2, "message": {"message_id": 1, "date": 0, "chat": PRIVATE}}
    inline_button = {
        "update_id": 3,
        "callback_query": {
            "id": "q",
            "from": PARENT,
            "chat_instance": "c",
            "inline_message_id": "i",
            "data": "x",
        },
    }
    member_update = {"update_id": 4, "my_chat_member": {}}
    for update in (in_group, channel_post, inline_button, member_update):
        assert event_for(update) is None, update


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 1, "message": "hello"},
        {"update_id": 1, "message": {"text": "no chat"}},
        {"update_id": 1, "message": {"chat": PRIVATE, "from": PARENT, "text": 5}},
        {"update_id": 1, "message": {"chat": {"id": "501", "type": "private"}, "from": PARENT, "text": "x"}},
        {"update_id": 1, "callback_query": {"id": "q", "data": "x", "message": {"chat": PRIVATE}}},
        {
            "update_id": 1,
            "callback_query": {"id": "q", "from": PARENT, "data": ["x"], "message": {"chat": PRIVATE}},
        },
    ],
)
def test_an_update_of_the_wrong_shape_is_refused_not_guessed(update: dict) -> None:
    with pytest.raises(ValueError):
        event_for(update)
