"""Checks every flow passes, whatever it does: the shared contract of the dialog core."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from handlers.registry import FLOWS
from storage.models import ConversationState
from tests.dialog import Chat, text_of
from tests.school import load_example_school, parent_code

COMMANDS = sorted({c for f in FLOWS for c in f.commands})
KEYS = sorted({f.key for f in FLOWS if f.key})


@pytest.fixture
async def parent(deps, sessionmaker) -> Chat:
    await load_example_school(sessionmaker)
    chat = Chat(deps, user_id="77")
    await chat.say(f"/start {await parent_code(sessionmaker, 'S2026106')}")
    return chat


@pytest.mark.parametrize("command", COMMANDS)
async def test_every_command_answers_bound_and_unbound(deps, parent: Chat, command: str):
    assert (await parent.say(f"/{command}"))[0].text
    stranger = Chat(deps, user_id="99", language="en")
    assert (await stranger.say(f"/{command}"))[0].text


@pytest.mark.parametrize("command", COMMANDS)
async def test_cancel_always_leaves_the_flow(parent: Chat, sessionmaker, command: str):
    await parent.say(f"/{command}")
    await parent.say("/cancel")
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ConversationState)) == 0


FORGED = ["", "x", "999999", "../../etc", "🙂" * 10, "a:b:c:d", "ok:1", "y:999999", "c:0", "d:zzz"]
ODD_TEXTS = ["", " ", "x" * 4001, "<b>&</b>", "'; DROP TABLE student; --", "\u202eRTL", "/", "/@"]


@pytest.mark.parametrize("key", KEYS)
async def test_forged_buttons_are_answered_not_obeyed(parent: Chat, key: str):
    for data in FORGED:
        replies = await parent.press(f"{key}:{data}")
        assert replies and replies[0].text, (key, data)
        assert "出了问题" not in text_of(replies), f"{key}:{data} reached the error handler"


async def test_odd_texts_get_a_kind_answer(parent: Chat):
    for text in ODD_TEXTS:
        replies = await parent.say(text)
        assert replies and replies[0].text, text
        assert "出了问题" not in text_of(replies), text


async def test_unknown_command_sticker_and_long_text(parent: Chat):
    assert "/nosuch" in text_of(await parent.say("/nosuch"))
    assert "文字" in text_of(await parent.send_media("sticker"))
    assert "4000" in text_of(await parent.say("长" * 5000))


async def test_a_redelivered_update_is_processed_once(deps, sessionmaker):
    from handlers.dialog import Event
    from handlers.dispatch import handle

    event = Event.from_text("test", "5", "5", "/help", update_id=424242)
    assert await handle(event, deps)
    assert await handle(event, deps) == []


def test_commands_and_button_keys_belong_to_one_flow_each():
    """Two flows on one key would silently take each other's buttons."""
    keys = [f.key for f in FLOWS if f.key]
    commands = [c for f in FLOWS for c in f.commands]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert len(commands) == len(set(commands)), sorted(c for c in commands if commands.count(c) > 1)
