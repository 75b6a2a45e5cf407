"""Conversation tests as readable lists of turns, over the platform-neutral core."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from handlers.dialog import Event, Reply
from handlers.dispatch import Deps, handle
from handlers.start import ACCEPT

_update_ids = itertools.count(1)


@dataclass
class Chat:
    """One person in one chat; every turn goes through the real dispatcher and database.

    Like most people, they accept the privacy notice whenever it is shown (the answer comes with
    the notice); a story about declining makes a Chat with `accepts_privacy_notice=False`.
    """

    deps: Deps
    user_id: str = "1001"
    platform: str = "test"
    language: str | None = "zh-hans"
    seen: list[Reply] = field(default_factory=list)
    accepts_privacy_notice: bool = True

    async def _send(self, event: Event) -> list[Reply]:
        replies = await handle(event, self.deps)
        self.seen.extend(replies)
        if self.accepts_privacy_notice and ACCEPT in payloads(replies):
            replies = replies + await self.press(ACCEPT)
        return replies

    async def say(self, text: str) -> list[Reply]:
        return await self._send(
            Event.from_text(
                self.platform,
                self.user_id,
                self.user_id,
                text,
                language=self.language,
                update_id=next(_update_ids),
            )
        )

    async def press(self, payload: str) -> list[Reply]:
        return await self._send(
            Event(
                self.platform,
                self.user_id,
                self.user_id,
                button=payload,
                language=self.language,
                update_id=next(_update_ids),
            )
        )

    async def send_media(self, kind: str) -> list[Reply]:
        return await self._send(
            Event(
                self.platform,
                self.user_id,
                self.user_id,
                media=kind,
                language=self.language,
                update_id=next(_update_ids),
            )
        )


def text_of(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


def payloads(replies: list[Reply]) -> list[str]:
    return [b.payload for r in replies for row in r.buttons for b in row if b.payload]


async def verify_dialog(chat: Chat, turns: list[tuple[str, list[str]]]) -> None:
    """Each turn: what the person sends (text, or `button:<payload>`), and facts the answer must hold."""
    for request, expected in turns:
        if request.startswith("button:"):
            replies = await chat.press(request.removeprefix("button:"))
        else:
            replies = await chat.say(request)
        got = text_of(replies)
        assert replies, f"no answer to {request!r}"
        for fact in expected:
            assert fact in got, f"after {request!r} expected {fact!r} in:\n{got}"
