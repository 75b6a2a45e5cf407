"""Brute-force guards for the web: failed guesses counted per client address, in process memory.

Invite codes (60 bits) and dashboard links (HMAC-signed, 192-bit secret) cannot be guessed in any
useful time; these limits are defence in depth and keep guessers from costing us database writes.
They are per process: with `run --workers N` a guesser gets N times the allowance, still nothing
near enough, and a restart forgets them (docs/security.md, "Hardening"). Only failures count, so parents
behind one address (a school's Wi-Fi, a carrier's NAT) who type their codes right never meet them.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

# Keys (addresses) remembered at most; past this the oldest quiet ones are forgotten first.
MAX_KEYS = 10_000


class FailureLimiter:
    """At most `limit` failures per key in any `seconds`; `blocked(key)` once they are used up."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.seconds:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def blocked(self, key: str) -> bool:
        times = self._recent(key, self.clock())
        return times is not None and len(times) >= self.limit

    def failed(self, key: str) -> None:
        now = self.clock()
        times = self._recent(key, now)
        if times is None:
            if len(self._failures) >= MAX_KEYS:
                self._forget(now)
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(now)

    def _forget(self, now: float) -> None:
        """Drop keys with nothing recent, then (under a flood of addresses) the oldest half."""
        for key in list(self._failures):
            self._recent(key, now)
        if len(self._failures) >= MAX_KEYS:
            for key in list(self._failures)[: MAX_KEYS // 2]:
                del self._failures[key]


def client_ip(request: web.Request) -> str:
    """The client's address. X-Real-IP is believed only from a peer on loopback or a private
    network, i.e. our own reverse proxy (deploy/nginx.conf sets it, overwriting whatever the
    client sent); a client reaching us directly cannot choose the address it is counted under."""
    peer = request.remote or ""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    forwarded = request.headers.get("X-Real-IP", "").strip()
    if forwarded and (address.is_loopback or address.is_private):
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            return peer
    return peer
