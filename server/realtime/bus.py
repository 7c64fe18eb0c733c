"""The fan-out bus: routes each committed message to the streams of its recipients only.

A submit decides, once, which devices a message is released to; it publishes one ``Push``
naming them, with the frame serialised once and each device's envelope beside it. The bus
hands the push to the connections of those devices and to no other, so the cost of a
message does not depend on how many devices are connected elsewhere.

Each connection has a bounded mailbox (bytes and age): a consumer that falls behind has its
backlog dropped and is told to ``resync`` from its cursor, instead of growing the server's
memory. The embedded server uses this in-process bus; several server processes share pushes
and changes through Redis (a later issue).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from server.db.changes import Change, ChangeLog

# Per connection: the most a backlog may hold, and the oldest push it may hold, before the
# connection is moved to sync by cursor.
MAILBOX_BYTES = 1 << 20
MAILBOX_SECONDS = 10.0


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


@dataclass(eq=False, slots=True)
class Connection:
    """One open stream: whose it is, and what waits to be written to it."""

    device_id: str
    user_id: str
    session_id: str
    expires_at: float  # unix time at which the session expires
    mailbox: deque[tuple[float, Push]] = field(default_factory=deque)
    queued_bytes: int = 0
    resync: bool = False
    closing: tuple[int, str] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, push: Push, now: float) -> None:
        if self.resync or self.closing is not None:
            return  # the client will fetch it by cursor
        if self.mailbox and (
            self.queued_bytes + push.size > MAILBOX_BYTES
            or now - self.mailbox[0][0] > MAILBOX_SECONDS
        ):
            self.mailbox.clear()
            self.queued_bytes = 0
            self.resync = True
        else:
            self.mailbox.append((now, push))
            self.queued_bytes += push.size
        self.wake.set()

    def take(self) -> Push | None:
        if not self.mailbox:
            return None
        _, push = self.mailbox.popleft()
        self.queued_bytes -= push.size
        return push

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self.mailbox.clear()
            self.queued_bytes = 0
        self.wake.set()


CLOSE_REVOKED = 4401


class InProcessBus:
    def __init__(self, changes: ChangeLog | None = None) -> None:
        self._by_device: dict[str, set[Connection]] = {}
        self.changes = changes or ChangeLog()
        self.changes.listen(self._on_change)

    def publish(self, push: Push) -> None:
        now = time.monotonic()
        for device_id in push.recipients:
            for connection in self._by_device.get(device_id, ()):
                connection.offer(push, now)

    def attach(self, connection: Connection) -> None:
        self._by_device.setdefault(connection.device_id, set()).add(connection)

    def detach(self, connection: Connection) -> None:
        held = self._by_device.get(connection.device_id)
        if held is not None:
            held.discard(connection)
            if not held:
                del self._by_device[connection.device_id]

    def _connections(self) -> Iterator[Connection]:
        for held in self._by_device.values():
            yield from held

    def _on_change(self, changes: list[Change]) -> None:
        """Close, at once, the streams of a revoked session or device or a disabled user."""
        closing = {c.key: c.reason for c in changes if c.close}
        if not closing:
            return
        for connection in list(self._connections()):
            for key in (
                f"session:{connection.session_id}",
                f"device:{connection.device_id}",
                f"user:{connection.user_id}",
            ):
                if key in closing:
                    connection.close(CLOSE_REVOKED, closing[key])
                    break

    @property
    def subscribers(self) -> int:
        return sum(len(held) for held in self._by_device.values())
