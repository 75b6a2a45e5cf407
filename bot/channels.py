"""What the outbox sender needs from a channel adapter: deliver one reply to one chat."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from handlers.dialog import Reply


class Status(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # transient: try again later
    OFFLINE = "offline"  # no open connection (web chat closed): wait for them, not a failure
    UNREACHABLE = "unreachable"  # the person blocked the bot or left
    FAILED = "failed"  # permanent for this message (e.g. malformed)


@dataclass(frozen=True)
class Delivery:
    status: Status
    error: str = ""
    retry_after: float | None = None


class Channel(Protocol):
    platform: str

    async def deliver(self, chat_id: str, reply: Reply) -> Delivery: ...
