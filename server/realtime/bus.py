"""The fan-out bus: tells every connected device's gateway that a message was committed.

Events carry only the message's sequence number and channel: each gateway loads the message
and makes the delivery decision itself, for its own device. The embedded server uses the
in-process bus; several server processes share events through Redis (a later step).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

# A connection that falls this far behind is told to resynchronise instead of growing a queue.
QUEUE_LIMIT = 1000


@dataclass(frozen=True)
class MessageEvent:
    seq: int
    channel_id: str


class InProcessBus:
    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[MessageEvent | None]] = set()

    def publish(self, event: MessageEvent) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # Replace the backlog by one overflow marker: the subscriber resyncs.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[MessageEvent | None]]:
        queue: asyncio.Queue[MessageEvent | None] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._queues)
