"""The bus between server processes, over Redis (``ATTACHE_REDIS_URL``).

Each process keeps its own streams and its own view of decisions (``InProcessBus``, the
change log of ``server.db.changes``). This bus carries between processes what the view and
the streams need:

- **Changes.** Each transaction committed here that changes a decision (``ChangeLog.record``)
  goes to the peers with its origin and ``seq``; each peer applies it to its own log, so that
  its caches drop what it touched, its streams get the roster notices, and a logout, a
  revoked device or a disabled account closes the streams it holds too.
- **Pushes.** Each push published here goes to the peers, which route it to their own
  connections of its recipients. A push carries the *frontier* of the submit's read (for
  each process, the last of its changes the submit had seen), which a peer turns into a
  version of its own log (``ChangeLog.version_before``): its gate then decides the push again
  from the database when anything the decision rests on changed after that read, wherever
  the change was made, exactly as for a push of its own.

**Transport.** One Redis pub/sub channel per deployment, named after the audit origin (which
every process of a deployment shares, the checkpoints being signed under it). Every process
hears every message and keeps what is for its own connections: one PUBLISH per message, and
a lookup per recipient in each process. Routing each push only to the processes that hold
its recipients' streams would need a registry of streams in Redis, kept right through
crashes and restarts; with the few processes a deployment runs, the broadcast costs less
than that registry would, and has nothing to go stale (decision, issue 11).

**Nothing lost.** Pub/sub keeps nothing for a subscriber that is away. Each message carries
its publisher's running count: a process that sees a peer's count skip, or whose subscription
dropped and was taken up again (Redis restarted, a network blip), has missed something, and
*rebuilds*: it records a change of anything (every cache here is dropped and read again from
the database, and the peers learn of it, so that a decision they made before it is checked
again here), and closes every stream it holds with 1012, so that each client reconnects,
is authenticated afresh against the database, and resumes from its cursor. Messages are in
the database; only their live copies were missed. A process killed between committing a
change and publishing it leaves no skipped count: every process says it is alive each
second, and a peer silent for five seconds without having said goodbye (a graceful stop
publishes what is queued, then a goodbye) is taken for dead, and its peers rebuild too.

A peer's change takes effect here once it arrives: the bus's lag (``attache_bus_lag_seconds``
on ``/metrics``, a millisecond or so on one machine). docs/deployment.md says what that
window means.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from dataclasses import replace

import redis.asyncio as redis
from redis.exceptions import RedisError

from server.db.changes import ANY, Change, ChangeLog
from server.realtime.bus import InProcessBus, Push

logger = logging.getLogger(__name__)

CLOSE_RECONNECT = 1012  # "service restart": the client reconnects and syncs from its cursor
RECONNECT_REASON = "the server missed messages from its peers; reconnect and sync"
# A push that took longer than this to arrive is decided again from the database here (its
# frontier is too old to compare with what is retained; ``server.db.changes``).
STALE_PUSH_SECONDS = 60.0
# Waits between attempts to reach Redis again, and the longest wait at start for the first
# subscription (beyond it the process starts unready, and rebuilds once it subscribes).
RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0)
START_SECONDS = 5.0
# Messages waiting to be published beyond this are dropped (Redis is away); the peers see
# the skip in the count and rebuild.
OUTBOX_BYTES = 64 << 20
# Redis answers a health-check PING at least this often on the subscription, so that a
# connection silently gone (a vanished network) is noticed.
HEALTH_SECONDS = 5
# Every process says it is alive this often; a peer heard from no more for PEER_SILENT_SECONDS
# without having said goodbye died (SIGKILL, a crash, a vanished machine), perhaps between
# committing a change and publishing it, which no count can show: a rebuild.
HEARTBEAT_SECONDS = 1.0
PEER_SILENT_SECONDS = 5.0
# At a graceful stop, how long what is queued may take to go out before the goodbye.
FLUSH_SECONDS = 2.0


def channel_name(audit_origin: str) -> str:
    return f"attache:{audit_origin}:bus"


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


class RedisBus(InProcessBus):
    def __init__(self, url: str, channel: str, changes: ChangeLog | None = None) -> None:
        super().__init__(changes)
        self._url = url
        self._channel = channel
        self._origin = self.changes.origin
        self._own = f"{self._origin} ".encode()
        self._count = 0  # messages this process has published (each is numbered)
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._pending = asyncio.Event()
        self._heard: dict[str, int] = {}  # peer origin -> the count of its last message
        self._alive: dict[str, float] = {}  # peer origin -> when last heard (monotonic)
        self._sending = False
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: redis.Redis | None = None
        self._tried = asyncio.Event()  # the first subscription was attempted
        self.listening = False
        self.lag_seconds = math.nan  # of the last message heard from a peer
        self.misses = 0  # rebuilds
        self.changes.export(self._export)

    # --- life ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, and wait (a few seconds at most) for the first attempt to finish: a
        process that starts while Redis is away serves unready (``/readyz``) and rebuilds
        once it reaches Redis."""
        self._publisher = redis.from_url(self._url)
        self._tasks = [
            asyncio.create_task(self._listen(), name="bus-listen"),
            asyncio.create_task(self._send(), name="bus-send"),
            asyncio.create_task(self._beat(), name="bus-heartbeat"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), START_SECONDS)
        if not self.listening:
            logger.warning("Redis is unreachable: this process waits for it, unready")

    async def aclose(self) -> None:
        """Stop: what is queued goes out (a change committed just before must reach the
        peers: nothing else would tell them), then a goodbye, so that they do not take the
        silence for a death."""
        if self._tasks and self.listening:
            self._queue("b", "{}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flushed(), FLUSH_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._publisher is not None:
            await self._publisher.aclose()
            self._publisher = None
        await super().aclose()

    async def check(self) -> None:
        """For ``/readyz``: subscribed, and Redis answers."""
        if not self.listening or self._publisher is None:
            raise ConnectionError("not subscribed to the bus")
        await self._publisher.ping()

    # --- out ------------------------------------------------------------------------------

    def publish(self, push: Push) -> None:
        super().publish(push)  # this process's own streams, at once
        about = {
            "f": self.changes.frontier(push.version),
            "q": push.seq,
            "ch": push.channel_id,
            "r": push.recipients,
        }
        # The frame's parts and the envelopes as lines, not JSON within JSON: they are JSON
        # text and base64url already (no newline in either), and re-escaping 50 envelopes
        # was the bus's dearest part.
        envelopes = "\n".join(f"{device} {envelope}" for device, envelope in push.envelopes.items())
        self._queue("p", _dumps(about), push.head, push.tail, envelopes)

    def _export(self, seq: int, changes: list[Change]) -> None:
        self._queue("c", _dumps({"s": seq, "c": [[c.key, c.close, c.reason] for c in changes]}))

    def _queue(self, kind: str, *lines: str) -> None:
        """Wire form: ``ORIGIN COUNT TIME KIND``, then the kind's lines (a JSON header first).
        The origin leads, so that a process drops its own messages, heard back, unread."""
        self._count += 1
        data = "\n".join((f"{self._origin} {self._count} {time.time()!r} {kind}", *lines)).encode()
        if self._outbox_bytes + len(data) > OUTBOX_BYTES:
            logger.warning("the bus's outbox is full (Redis away?): %d dropped", len(self._outbox))
            self._outbox.clear()
            self._outbox_bytes = 0
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._pending.set()

    async def _flushed(self) -> None:
        while self._outbox or self._sending:
            await asyncio.sleep(0.005)

    async def _beat(self) -> None:
        """Say this process is alive; find the peers that are not."""
        ticked = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if self.listening:
                self._queue("h", "{}")
            now, ticked, before = time.monotonic(), time.monotonic(), ticked
            if now - before > 2 * HEARTBEAT_SECONDS:
                # This process was the one stalled (its loop blocked): the peers' heartbeats
                # wait unread in the socket. A fresh window for each, not a rebuild.
                self._alive = dict.fromkeys(self._alive, now)
                continue
            for origin, heard in list(self._alive.items()):
                if now - heard > PEER_SILENT_SECONDS:
                    del self._alive[origin]
                    self._heard.pop(origin, None)
                    self._missed("a peer fell silent without saying goodbye")

    async def _send(self) -> None:
        """Publish what waits, in order, pipelined. On failure what was taken is lost (its
        counts spent): once Redis answers again a ``hello`` shows the peers the skip."""
        assert self._publisher is not None
        publisher = self._publisher
        while True:
            await self._pending.wait()
            self._pending.clear()
            while self._outbox:
                batch = list(self._outbox)
                self._outbox.clear()
                self._outbox_bytes = 0
                self._sending = True
                try:
                    async with publisher.pipeline(transaction=False) as pipe:
                        for data in batch:
                            pipe.publish(self._channel, data)
                        await pipe.execute()
                except (RedisError, OSError) as exc:
                    logger.warning("publishing on the bus failed (%s)", exc.__class__.__name__)
                    await self._hello(publisher)
                except Exception:  # a bug here must not stop this process publishing
                    logger.exception("publishing on the bus")
                    await self._hello(publisher)
                finally:
                    self._sending = False

    async def _hello(self, publisher: redis.Redis) -> None:
        """Until Redis takes it, a message with nothing but this process's count."""
        for attempt in range(1 << 30):
            await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            self._outbox.clear()  # stale by now, and the peers will rebuild
            self._outbox_bytes = 0
            self._count += 1
            hello = f"{self._origin} {self._count} {time.time()!r} h\n{{}}"
            with contextlib.suppress(RedisError, OSError):
                await publisher.publish(self._channel, hello)
                return

    # --- in -------------------------------------------------------------------------------

    async def _listen(self) -> None:
        subscribed_before = False
        attempt = 0
        while True:
            client = redis.from_url(self._url, health_check_interval=HEALTH_SECONDS)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    # A bounded wait, so that the health-check PING goes out when it is due.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        try:
                            self._receive(message["data"])
                        except Exception:  # a bug here must not leave the process deaf
                            logger.exception("handling a message from the bus")
                    elif message["type"] == "subscribe":
                        # Also after the client reconnected by itself. From here on nothing
                        # is missed; what came before, when it was away, is rebuilt.
                        self.listening = True
                        attempt = 0
                        if subscribed_before:
                            self._missed("the subscription to Redis was lost")
                        subscribed_before = True
                        self._tried.set()
            except (RedisError, OSError) as exc:
                logger.warning("the bus's subscription failed (%s)", exc.__class__.__name__)
            finally:
                self.listening = False
                self._tried.set()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()
            # Whatever this process did while unsubscribed may rest on changes it missed.
            subscribed_before = True
            await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            attempt += 1

    def _receive(self, data: bytes) -> None:
        if data.startswith(self._own):
            return  # our own, heard back
        try:
            first, header, *rest = data.decode().split("\n")
            origin, count_text, sent, kind = first.split(" ")
            count = int(count_text)
            lag = max(time.time() - float(sent), 0.0)
            about = json.loads(header)
            if kind == "c":
                seq = int(about["s"])
                changes = [Change(str(k), bool(c), str(r)) for k, c, r in about["c"]]
            elif kind == "p":
                frontier = {str(o): int(s) for o, s in about["f"].items()}
                head, tail, *lines = rest
                envelopes = dict(line.split(" ") for line in lines if line)
                push = Push(
                    seq=int(about["q"]),
                    channel_id=str(about["ch"]),
                    version=-1,  # decided below, once the message is known to be whole
                    recipients=dict(about["r"]),
                    envelopes=envelopes,
                    head=head,
                    tail=tail,
                )
            elif kind not in ("h", "b"):
                raise ValueError(kind)
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("a message on the bus that is not Attaché's was ignored")
            return
        if kind == "b":  # a peer stopping: its silence from now on is no death
            self._heard.pop(origin, None)
            self._alive.pop(origin, None)
            return
        last = self._heard.get(origin)
        self._heard[origin] = count
        self._alive[origin] = time.monotonic()
        if last is not None and count != last + 1:
            self._missed(f"{count - last - 1} messages from a peer went astray")
        self.lag_seconds = lag
        if kind == "c":
            self.changes.apply(origin, seq, changes)
        elif kind == "p":
            if lag <= STALE_PUSH_SECONDS:
                push = replace(push, version=self.changes.version_before(frontier))
            InProcessBus.publish(self, push)

    def _missed(self, why: str) -> None:
        """Rebuild: drop every cache (here and, by the change, at the peers' for decisions
        made before it), and send every client here to reconnect and sync."""
        self.misses += 1
        logger.warning("missed bus traffic (%s): rebuilding from the database", why)
        self.changes.record([Change(ANY)])
        for connection in list(self._connections()):
            connection.close(CLOSE_RECONNECT, RECONNECT_REASON)
