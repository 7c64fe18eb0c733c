"""The fan-out bus: routes each committed message to the streams of its recipients only.

A submit decides, once, which devices a message is released to; it publishes one ``Push``
naming them, with the frame serialised once and each device's envelope beside it. The bus
hands the push to the connections of those devices and to no other, so the cost of a
message does not depend on how many devices are connected elsewhere.

Each connection has a bounded mailbox (bytes and age): a consumer that falls behind has its
backlog dropped and is told to ``resync`` from its cursor, instead of growing the server's
memory. The embedded server uses this in-process bus; several server processes share pushes
and changes through Redis (``server.realtime.redis_bus``, which extends this one).

Changes (``server.db.changes``) travel on the same mailboxes as small frames, ``Notice``s,
so that a client learns that a channel's roster changed before it seals to it. Which streams
a change concerns is the business of a ``Notifier`` the app gives (it may read the
database: changes are rare); while it works, pushes published meanwhile are held back and
then routed after its notices, so that a message sent after a change never reaches a stream
before the notice of that change. The push path itself reads nothing and costs nothing per
connected device: one test of a flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.db.changes import Change, ChangeLog

logger = logging.getLogger(__name__)

# Per connection: the most a backlog may hold, and the oldest push it may hold, before the
# connection is moved to sync by cursor.
MAILBOX_BYTES = 1 << 20
MAILBOX_SECONDS = 10.0
# The longest pushes wait for the notices of a change (the notifier's query waits for a pooled
# connection when the database is busy); beyond it every stream is told that any roster may
# have changed, and the pushes go.
NOTICE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Push:
    """One message for the devices it was released to.

    ``version`` is the change log's version before the submit read what it decided on; the
    decision stands for a device as long as nothing it depends on changed since.
    ``head`` and ``tail`` are the JSON text frame around the device's envelope (base64url).
    """

    seq: int
    channel_id: str
    version: int
    recipients: Mapping[str, str]  # device id -> user id
    envelopes: Mapping[str, str]  # device id -> base64url envelope
    head: str
    tail: str

    def frame_for(self, device_id: str) -> str:
        return f'{self.head}"{self.envelopes[device_id]}"{self.tail}'

    @property
    def size(self) -> int:
        return len(self.head) + len(self.tail) + 1600


@dataclass(frozen=True, slots=True)
class Notice:
    """A change frame (JSON text, serialised once) for the open streams of ``users``, or of
    every open stream when ``users`` is None."""

    frame: str
    users: frozenset[str] | None


class Notifier(Protocol):
    """Turns committed changes into notices for the streams they concern."""

    def concerns(self, change: Change) -> bool:
        """Whether ``change`` may need a notice (decided from the change alone, at once)."""
        ...

    async def notices(self, changes: Sequence[Change]) -> Sequence[Notice]:
        """The notices for ``changes`` (committed, in order), worked out after the fact."""
        ...


@dataclass(eq=False, slots=True)
class Connection:
    """One open stream: whose it is, and what waits to be written to it."""

    device_id: str
    user_id: str
    session_id: str
    expires_at: float  # unix time at which the session expires
    # Pushes, and notices as the frame text to write, in the order they were offered.
    mailbox: deque[tuple[float, Push | str]] = field(default_factory=deque)
    queued_bytes: int = 0
    resync: bool = False
    closing: tuple[int, str] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # The client said, in its auth frame, that it reads ``messages`` frames: pushes queued
    # together may be written as one frame (docs/PROTOCOL.md §17.7).
    batches: bool = False

    def offer(self, item: Push | str, now: float) -> None:
        """Queue a push, or a notice's frame. Beyond the bound, the backlog is dropped and the
        stream told to ``resync``, which also tells the client that any roster it holds may
        have changed (a notice may have been in what was dropped)."""
        if self.resync or self.closing is not None:
            return  # the client will fetch it by cursor
        size = _size(item)
        if self.mailbox and (
            self.queued_bytes + size > MAILBOX_BYTES or now - self.mailbox[0][0] > MAILBOX_SECONDS
        ):
            self.mailbox.clear()
            self.queued_bytes = 0
            self.resync = True
        else:
            self.mailbox.append((now, item))
            self.queued_bytes += size
        self.wake.set()

    def take(self) -> Push | str | None:
        if not self.mailbox:
            return None
        _, item = self.mailbox.popleft()
        self.queued_bytes -= _size(item)
        return item

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self.mailbox.clear()
            self.queued_bytes = 0
        self.wake.set()


def _size(item: Push | str) -> int:
    return len(item) if isinstance(item, str) else item.size


CLOSE_REVOKED = 4401

# Every roster this stream's client holds may have changed (the catalog or anything changed).
ANY_ROSTER_CHANGED = '{"type":"roster-changed"}'


class InProcessBus:
    def __init__(self, changes: ChangeLog | None = None) -> None:
        self._by_device: dict[str, set[Connection]] = {}
        self._by_user: dict[str, set[Connection]] = {}
        self._by_session: dict[str, set[Connection]] = {}
        self.changes = changes or ChangeLog()
        self.changes.listen(self._on_change)
        self._notifier: Notifier | None = None
        # Changes waiting for their notices, each with the change log's version it made.
        self._unnoticed: list[tuple[int, list[Change]]] = []
        # Pushes published while notices were being worked out, with the change log's version
        # when each was published: routed once the notices of every change before it are.
        self._held: deque[tuple[int, float, Push]] = deque()
        self._noticing: asyncio.Task[None] | None = None
        # What /metrics reads of a bus between processes (none here).
        self.lag_seconds = math.nan
        self.misses = 0

    async def start(self) -> None:
        """Nothing to reach: one process's bus."""

    def notify_with(self, notifier: Notifier) -> None:
        self._notifier = notifier

    async def aclose(self) -> None:
        """Stop working out notices (at shutdown); what was held is routed as it is.

        The notifier is let go: it holds the app's sessionmaker, whose session class the
        change log's listener is registered on, and keeping it from here would keep the app
        alive for as long as the process (the tests start many)."""
        self._notifier = None
        task, self._noticing = self._noticing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._release(None)

    async def settled(self) -> None:
        """Return once the notices of every change recorded so far are offered."""
        while (task := self._noticing) is not None:
            await asyncio.wait({task})

    def publish(self, push: Push) -> None:
        now = time.monotonic()
        if self._noticing is not None:
            self._held.append((self.changes.version, now, push))
            return
        self._route(push, now)

    def _route(self, push: Push, now: float) -> None:
        for device_id in push.recipients:
            for connection in self._by_device.get(device_id, ()):
                connection.offer(push, now)

    def attach(self, connection: Connection) -> None:
        self._by_device.setdefault(connection.device_id, set()).add(connection)
        self._by_user.setdefault(connection.user_id, set()).add(connection)
        self._by_session.setdefault(connection.session_id, set()).add(connection)

    def detach(self, connection: Connection) -> None:
        for index, key in (
            (self._by_device, connection.device_id),
            (self._by_user, connection.user_id),
            (self._by_session, connection.session_id),
        ):
            held = index.get(key)
            if held is not None:
                held.discard(connection)
                if not held:
                    del index[key]

    def _connections(self) -> Iterator[Connection]:
        for held in self._by_device.values():
            yield from held

    def _on_change(self, changes: list[Change]) -> None:
        """Close, at once, the streams of a revoked session or device or a disabled user; and
        have the notices of the changes worked out, holding back pushes until they are."""
        notifier = self._notifier
        if notifier is not None:
            concerning = [c for c in changes if notifier.concerns(c)]
            if concerning:
                self._unnoticed.append((self.changes.version, concerning))
                if self._noticing is None:
                    try:
                        loop = asyncio.get_running_loop()
                    except RuntimeError:  # committed outside the server's loop: no streams
                        self._unnoticed.clear()
                    else:
                        self._noticing = loop.create_task(self._notice(notifier))
        self._close(changes)

    async def _notice(self, notifier: Notifier) -> None:
        """Work out the notices of the changes waiting, a batch at a time, in order; after
        each batch, route the pushes published before any later change."""
        try:
            while self._unnoticed:
                batch, self._unnoticed = self._unnoticed, []
                upto = batch[-1][0]
                changes = [c for _, found in batch for c in found]
                try:
                    notices = await asyncio.wait_for(notifier.notices(changes), NOTICE_SECONDS)
                except Exception as exc:
                    # Who is concerned is unknown: every stream is told that any roster may
                    # have changed, which names no channel (and costs a refetch at worst).
                    if isinstance(exc, TimeoutError):
                        logger.warning("the notices of %d changes took too long", len(changes))
                    else:
                        logger.exception("working out the notices of %d changes", len(changes))
                    notices = [Notice(ANY_ROSTER_CHANGED, None)]
                now = time.monotonic()
                for notice in notices:
                    self._offer(notice, now)
                self._release(upto)
        finally:
            if self._noticing is asyncio.current_task():
                self._noticing = None
                self._release(None)

    def _offer(self, notice: Notice, now: float) -> None:
        if notice.users is None:
            for connection in list(self._connections()):
                connection.offer(notice.frame, now)
            return
        for user_id in notice.users:
            for connection in self._by_user.get(user_id, ()):
                connection.offer(notice.frame, now)

    def _release(self, upto: int | None) -> None:
        """Route the held pushes published at or before version ``upto`` (None: all)."""
        while self._held and (upto is None or self._held[0][0] <= upto):
            _, at, push = self._held.popleft()
            self._route(push, at)

    def _close(self, changes: list[Change]) -> None:
        """Close the streams of each closing change's session, device or user, found by
        index (a logout costs nothing per connected device); a stream closed by several
        says why as its session, else its device, else its user."""
        closing = {c.key: c.reason for c in changes if c.close}
        if not closing:
            return
        for kind, index in (
            ("session:", self._by_session),
            ("device:", self._by_device),
            ("user:", self._by_user),
        ):
            for key, reason in closing.items():
                if key.startswith(kind):
                    for connection in list(index.get(key.removeprefix(kind), ())):
                        connection.close(CLOSE_REVOKED, reason)

    @property
    def subscribers(self) -> int:
        return sum(len(held) for held in self._by_device.values())
