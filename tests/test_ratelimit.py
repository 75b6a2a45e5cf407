"""The limiter keeps every window however the requests are delayed on their way (a property).

A simulated clock: each send starts when the limiter allows, reaches "Telegram" at any moment
before its answer, and is answered after a random round trip. Whatever the delays, no window of
arrivals holds more than the limit; this is why the sender cannot cause a 429 by itself.
"""

from __future__ import annotations

import heapq
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import Settings
from bot.ratelimit import Limiter, Limits, Window


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The largest number of `times` in any window (t - seconds, t]."""
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - seconds:
            first += 1
        best = max(best, last - first + 1)
    return best


sends = st.lists(
    st.tuples(
        st.sampled_from(["1", "2", "3", "-100200"]),  # three parents and a group
        st.floats(0.0, 0.4),  # round trip
        st.floats(0.0, 1.0),  # where in it Telegram counts the message
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    sends=sends,
    per_bot=st.integers(1, 8),
    per_chat=st.integers(1, 3),
    per_group=st.integers(1, 3),
    concurrency=st.integers(1, 6),
)
def test_no_window_of_arrivals_ever_holds_more_than_the_limit(
    sends, per_bot, per_chat, per_group, concurrency
):
    limits = Limits(
        per_bot=Window(per_bot, 1.0), per_chat=Window(per_chat, 2.0), per_group=Window(per_group, 3.0)
    )
    clock = Clock()
    limiter = Limiter(limits, clock)
    waiting = list(sends)
    answers: list[tuple[float, int, str]] = []  # (answer time, seq, chat)
    arrivals: dict[str, list[float]] = {}
    everything: list[float] = []
    seq = 0
    while waiting or answers:
        while answers and answers[0][0] <= clock.now:
            _, _, chat = heapq.heappop(answers)
            limiter.finish(chat)
        if not waiting:
            if answers:
                clock.now = answers[0][0]
            continue
        started = False
        wait: float | None = None
        for i, (chat, rtt, where) in enumerate(waiting):
            if len(answers) >= concurrency:
                break
            delay = limiter.delay(chat)
            if delay == 0:
                limiter.start(chat)
                arrival = clock.now + where * rtt
                arrivals.setdefault(chat, []).append(arrival)
                everything.append(arrival)
                seq += 1
                heapq.heappush(answers, (clock.now + rtt, seq, chat))
                del waiting[i]
                started = True
                break
            if delay is not None:
                wait = delay if wait is None else min(wait, delay)
        if started:
            continue
        moments = [answers[0][0]] if answers else []
        if wait is not None:
            moments.append(clock.now + wait)
        assert moments, "the limiter must always say when to look again"
        clock.now = max(min(moments), math.nextafter(clock.now, math.inf))
        if answers and answers[0][0] <= clock.now:
            clock.now = answers[0][0]  # finish() reads the clock at the answer

    assert most_in_any_window(everything, 1.0) <= per_bot
    for chat, times in arrivals.items():
        limit, seconds = (per_group, 3.0) if chat.startswith("-") else (per_chat, 2.0)
        assert most_in_any_window(times, seconds) <= limit


def test_a_pause_holds_every_chat_and_transient_errors_back_off_longer_each_time():
    clock = Clock()
    limiter = Limiter(Limits(per_bot=Window(30, 1.0)), clock)
    assert limiter.delay("1") == 0
    limiter.pause(3)
    assert limiter.delay("1") == limiter.delay("2") == 3
    clock.now = 3.0
    assert limiter.delay("1") == 0
    pauses = []
    for _ in range(4):
        limiter.failed()
        pauses.append(limiter.paused_until - clock.now)
    assert pauses == [0.5, 1.0, 2.0, 4.0]
    clock.now = limiter.paused_until
    limiter.succeeded()
    limiter.failed()
    assert limiter.paused_until - clock.now == 0.5


def test_telegrams_limits_come_from_the_settings():
    settings = Settings(_env_file=None, send_rate_per_second=30, send_per_chat_burst=3)  # type: ignore[call-arg]
    assert Limits.telegram(settings) == Limits(
        per_bot=Window(30, 1.0), per_chat=Window(3, 3.0), per_group=Window(20, 60.0)
    )
