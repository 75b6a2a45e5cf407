"""Two updates of one chat handled at the same moment (Telegram posts a chat's quick taps over
several connections, and with several workers they reach different processes): neither is lost."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from storage.models import ConversationState
from tests.dialog import Chat
from tests.school import load_example_school, parent_code


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
