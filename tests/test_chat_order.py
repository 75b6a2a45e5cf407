"""Two updates of one chat handled at the same moment (Telegram posts a chat's quick taps over
several connections, and with several workers they reach different processes): neither is lost."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from handlers.dispatch import Deps
from storage.models import ConversationState
from tests.dialog import Chat
from tests.school import load_example_school, parent_code, person_code


async def test_two_quick_taps_of_one_parent_both_count(deps, sessionmaker):
    await load_example_school(sessionmaker)
    parent = Chat(deps, user_id="p1")
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    await parent.say("/apply")  # every weekday is ticked to begin with

    # Each tap reads the draft and writes it back; without a lock on the account, both would read
    # the same draft (PostgreSQL) and the second write would undo the first.
    await asyncio.gather(parent.press("a:d:tue"), parent.press("a:d:thu"))

    async with sessionmaker() as session:
        (state,) = await session.scalars(select(ConversationState))
    assert state.flow == "apply"
    assert "tue" not in state.data["days"] and "thu" not in state.data["days"]
    assert "mon" in state.data["days"]


async def test_the_sender_is_woken_only_after_an_event_that_queued_a_message(sessionmaker, links):
    woken: list[int] = []
    deps = Deps(sessionmaker=sessionmaker, links=links, on_queued=lambda: woken.append(1))
    await load_example_school(sessionmaker)
    teacher = Chat(deps, user_id="t1")
    await teacher.say(f"/start {await person_code(sessionmaker, 'teacher', 'T001')}")
    parent = Chat(deps, user_id="p1")
    await parent.say(f"/start {await parent_code(sessionmaker, 'S2026101')}")
    woken.clear()

    await parent.say("/help")
    await parent.say("/apply")
    for payload in ("a:n", "a:n", "a:n", "a:n", "a:w:n"):
        await parent.press(payload)
    assert woken == []  # nothing for anyone else yet: no claim query for the sender to run

    await parent.press("a:ok")  # the class teacher is asked to review
    assert woken == [1]
