"""Send-rate limits of one platform, held in the sender's memory (only the leader sends).

Each limit is a sliding window: at most `count` messages in any `seconds`. The platform counts a
message when the request reaches it, somewhere between our send and its answer, and we cannot see
when that is. So a send holds its slot from the moment it starts until `seconds` after its answer:
then however the requests are delayed on the way, no window of arrivals can hold more than
`count` (docs/delivery.md has the argument). The price is one round trip per window, a few per
cent at Telegram's limits.

On top, starts are paced evenly (`seconds / count` apart, on a grid, so a start the event loop
made a little late does not slow the rate) and a window's messages do not leave in one burst; a
429's retry_after pauses the whole platform; transient errors back the platform off.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Settings

Clock = Callable[[], float]


@dataclass(frozen=True)
class Window:
    """At most `count` messages in any `seconds`."""

    count: int
    seconds: float


@dataclass(frozen=True)
class Limits:
    """A platform's limits; None means none. Group chats are told by a negative chat id (Telegram)."""

    per_bot: Window | None = None
    per_chat: Window | None = None
    per_group: Window | None = None

    @classmethod
    def telegram(cls, settings: Settings) -> Limits:
        burst = settings.send_per_chat_burst
        rate = settings.send_rate_per_second
        count = max(1, round(rate))
        return cls(
            per_bot=Window(count, count / rate),
            per_chat=Window(burst, burst / settings.send_per_chat_per_second),
            per_group=Window(settings.send_per_group_per_minute, 60.0),
        )


UNLIMITED = Limits()
# Consecutive transient failures back the whole platform off: 0.5 s, 1 s, 2 s ... up to 30 s.
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0


class SlidingWindow:
    """One window, counted conservatively: a slot is busy from start until `seconds` after the answer."""

    __slots__ = ("answered", "count", "in_flight", "seconds")

    def __init__(self, window: Window) -> None:
        self.count = window.count
        self.seconds = window.seconds
        self.in_flight = 0
        self.answered: deque[float] = deque()

    def delay(self, now: float) -> float | None:
        """0 when a send may start now, else seconds until a slot frees, or None when only an
        answer can free one (every slot is in flight)."""
        horizon = now - self.seconds
        answered = self.answered
        while answered and answered[0] <= horizon:
            answered.popleft()
        if self.in_flight + len(answered) < self.count:
            return 0.0
        if answered:
            return answered[0] - horizon
        return None

    def start(self) -> None:
        self.in_flight += 1

    def finish(self, now: float) -> None:
        self.in_flight -= 1
        self.answered.append(now)

    def idle(self, now: float) -> bool:
        self.delay(now)
        return self.in_flight == 0 and not self.answered


def _later(a: float | None, b: float | None) -> float | None:
    """The longer of two delays, where None (wait for an answer) counts as unknown but positive."""
    if a is None:
        return b if b else None
    if b is None:
        return a if a else None
    return max(a, b)


class Limiter:
    """All limits of one platform: call `delay`, then `start` (no await between), then `finish`."""

    def __init__(self, limits: Limits, clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.per_bot = SlidingWindow(limits.per_bot) if limits.per_bot else None
        self.spacing = limits.per_bot.seconds / limits.per_bot.count if limits.per_bot else 0.0
        self.next_start = 0.0  # the pacing grid: no start before this
        self.paused_until = 0.0
        self.failures = 0
        self.chats: dict[str, SlidingWindow] = {}
        self._finished = 0

    def _chat_window(self, chat_id: str) -> Window | None:
        if self.limits.per_group is not None and chat_id.startswith("-"):
            return self.limits.per_group
        return self.limits.per_chat

    def bot_delay(self, now: float | None = None) -> float | None:
        """What holds back every chat of this platform: a pause, the spacing, the per-bot window."""
        now = self.clock() if now is None else now
        waits = max(self.paused_until - now, self.next_start - now, 0.0)
        if self.per_bot is None:
            return waits
        return _later(waits, self.per_bot.delay(now))

    def chat_delay(self, chat_id: str, now: float | None = None) -> float | None:
        now = self.clock() if now is None else now
        window = self.chats.get(chat_id)
        return window.delay(now) if window is not None else 0.0

    def delay(self, chat_id: str) -> float | None:
        now = self.clock()
        return _later(self.bot_delay(now), self.chat_delay(chat_id, now))

    def start(self, chat_id: str) -> None:
        now = self.clock()
        if self.per_bot is not None:
            self.per_bot.start()
            if now - self.next_start > self.spacing:  # idle, or far behind: the grid starts anew
                self.next_start = now
            self.next_start += self.spacing
        window = self._chat_window(chat_id)
        if window is not None:
            chat = self.chats.get(chat_id)
            if chat is None:
                chat = self.chats[chat_id] = SlidingWindow(window)
            chat.start()

    def finish(self, chat_id: str) -> None:
        now = self.clock()
        if self.per_bot is not None:
            self.per_bot.finish(now)
        chat = self.chats.get(chat_id)
        if chat is not None:
            chat.finish(now)
        self._finished += 1
        if self._finished % 1000 == 0:  # forget chats whose windows are empty (bounded memory)
            for key in [k for k, w in self.chats.items() if w.idle(now)]:
                del self.chats[key]

    def pause(self, seconds: float) -> None:
        """The platform said "retry after": nothing goes to it before then."""
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def failed(self) -> None:
        """A transient error (network, 5xx): back off the whole platform, longer each time."""
        self.failures += 1
        self.pause(min(BACKOFF_START * 2 ** (self.failures - 1), BACKOFF_MAX))

    def succeeded(self) -> None:
        self.failures = 0
