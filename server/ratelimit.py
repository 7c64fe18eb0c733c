"""Rate limits: how fast one device, or one source address, may make a kind of request.

Each limited kind of request (an *action*: login, enrol, submit, upload) has a ``Rate``: a burst
that may come at once, refilled at a steady rate per minute. A request over its rate is
refused with 429 ``too-many-requests`` and ``Retry-After`` (``TooManyRequests``) before it
reaches the database, and the same request again is refused before it is even routed
(``Refused``, ``RefuseAgain``), so that a flood costs the server little more than reading it.

The limits are **per process**: the ``MemoryLimiter`` below keeps its counts in this process's
memory, so N server processes behind a load balancer admit up to N times each rate. A limiter
shared through Redis (issue 11) replaces it by implementing ``Limiter``; nothing else changes.

Why a small GCRA here rather than the ``limits`` package (5.8, which also has Redis storage):
its asyncio in-memory storage sweeps every stored key for expiry from a task scheduled on each hit,
so the cost of one request grows with the number of devices and addresses seen lately (the
opposite of what a limiter under a flood must do), keeps an ``asyncio.Lock`` per key, and
reads the wall clock, which can step. The generic cell rate algorithm keeps one float per key,
says exactly how long to wait, and needs no lock in a single-threaded event loop (nothing
awaits between reading and writing a key). Its Redis form is a known short Lua script.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import TooManyRequests, service_problem
from server.settings import Settings

LOGIN = "login"
ENROL = "enrol"
SUBMIT = "submit"
UPLOAD = "upload"

# What a refusal calls the requests it counts, and whose they are.
_NOUNS = {
    LOGIN: "sign-in requests",
    ENROL: "enrolment requests",
    SUBMIT: "messages",
    UPLOAD: "uploads",
}


@dataclass(frozen=True)
class Rate:
    """``burst`` requests at once, and then one every ``60 / per_minute`` seconds."""

    per_minute: int
    burst: int

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.burst < 1:
            raise ValueError("a rate admits at least one request per minute and a burst of one")

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute


class Limiter(Protocol):
    """Counts one action's requests per key (a device id or an address)."""

    async def admit(self, key: str) -> float:
        """Count one request of ``key`` and return 0.0, or, if its rate is spent, count
        nothing and return the seconds until a request of ``key`` would be admitted."""
        ...


class MemoryLimiter:
    """GCRA in this process's memory, for one action.

    Each key keeps its theoretical arrival time (TAT): when its bucket would be full again
    minus one request. A key whose TAT has passed is the same as a key never seen, so it is
    dropped; keys are kept in the order they were last admitted, and each call drops the
    stale ones at the front. What remains is the keys admitted within the last burst period
    (``burst * interval``), and never more than ``max_keys``: past that the least recently
    admitted key is forgotten early (that key gets a fresh burst, which costs the server one
    burst; refusing newcomers instead would let a flood from many addresses lock out everyone).
    """

    def __init__(
        self, rate: Rate, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tat)

    async def admit(self, key: str) -> float:
        now = self._clock()
        self._evict(now)
        interval = self.rate.interval
        tat = max(self._tat.get(key, now), now) + interval
        wait = tat - now - self.rate.burst * interval
        if wait > 0:
            return wait
        self._tat[key] = tat
        self._tat.move_to_end(key)
        while len(self._tat) > self.max_keys:
            self._tat.popitem(last=False)
        return 0.0

    def _evict(self, now: float) -> None:
        # Amortised O(1): a key leaves at most once for each time it was admitted.
        while self._tat:
            key, tat = next(iter(self._tat.items()))
            if tat > now:
                return
            del self._tat[key]


class Refused:
    """Requests refused moments ago, so that the same request again is refused before routing.

    A refusal says how long until the bucket admits anything (GCRA: nothing but time makes
    room, and admissions elsewhere only push that later), so until then the same caller's
    same request (method and path) is certain to be refused again. ``RefuseAgain`` answers
    those from here, without reading the body, routing, or resolving the principal: the most
    of a flood then costs a hash and a dictionary lookup. Bounded like ``MemoryLimiter``:
    entries leave when their time has passed, and past ``max_entries`` the oldest leaves.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._until: OrderedDict[Hashable, tuple[float, str, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def remember(self, key: Hashable, wait: float, action: str, scope: str) -> None:
        self._until[key] = (self._clock() + wait, action, scope)
        self._until.move_to_end(key)
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def refusal(self, keys: Iterable[Hashable]) -> TooManyRequests | None:
        """The refusal standing for any of ``keys``, or None."""
        now = self._clock()
        while self._until:
            key, (until, _, _) = next(iter(self._until.items()))
            if until > now:
                break
            del self._until[key]
        for key in keys:
            found = self._until.get(key)
            if found is not None and found[0] > now:
                return refusal(found[1], found[2], found[0] - now)
        return None


def refusal(action: str, scope: str, wait: float) -> TooManyRequests:
    retry_after = max(1, math.ceil(wait))
    return TooManyRequests(
        f"too many {_NOUNS.get(action, action + ' requests')} from this {scope}; "
        f"try again in {retry_after} s",
        retry_after=retry_after,
        limit=action,
        scope=scope,
    )


def caller_keys(scope: Scope) -> list[Hashable]:
    """What identifies a request for ``Refused``: its method and path with the digest of its
    credentials (per device) or with its client address (per address)."""
    method, path = scope.get("method", ""), scope.get("path", "")
    client = scope.get("client")
    keys: list[Hashable] = [("address", client[0] if client else "unknown", method, path)]
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            keys.append(("device", hashlib.sha256(value).digest(), method, path))
            break
    return keys


class RefuseAgain:
    """ASGI middleware: answer 429 at once to a request ``Refused`` knows will be refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limits: RateLimits = scope["app"].state.rate_limits
            if len(limits.refused):
                refused = limits.refused.refusal(caller_keys(scope))
                if refused is not None:
                    await service_problem(refused)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class RateLimits:
    """The server's limiters, one per action, and the refusal when one is spent."""

    def __init__(self, limiters: dict[str, Limiter]) -> None:
        self.limiters = limiters
        self.refused = Refused()

    @classmethod
    def in_memory(cls, settings: Settings) -> RateLimits:
        rates = {
            LOGIN: Rate(settings.rate_limit_login_per_minute, settings.rate_limit_login_burst),
            ENROL: Rate(settings.rate_limit_enrol_per_minute, settings.rate_limit_enrol_burst),
            SUBMIT: Rate(settings.rate_limit_submit_per_minute, settings.rate_limit_submit_burst),
            UPLOAD: Rate(settings.rate_limit_upload_per_minute, settings.rate_limit_upload_burst),
        }
        return cls({action: MemoryLimiter(rate) for action, rate in rates.items()})

    async def check(self, action: str, key: str, *, scope: str, request: Scope) -> None:
        """Count a request of ``action`` by ``key`` (a ``scope``: "device" or "address"), or
        raise ``TooManyRequests`` saying when to try again, and remember the refusal so that
        the same request is refused again before routing while it stands.

        Refusals are not audited: one event per refused request would let the flood this
        stops grow the log instead."""
        wait = await self.limiters[action].admit(key)
        if wait > 0:
            keys = caller_keys(request)
            self.refused.remember(keys[0] if scope == "address" else keys[-1], wait, action, scope)
            raise refusal(action, scope, wait)
