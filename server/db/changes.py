"""The change log: what can change a delivery decision, versioned, kept in memory.

Every committed transaction that changes something a releasability decision reads (a
membership, a user's clearance or status, a device, a session, the nations and groups behind
the catalog) bumps one version number and records the keys it touched. A decision made at
version ``v`` that depends on keys ``K`` still holds at a later version exactly when no change
since ``v`` touched ``K``: then a push, or a cached eligibility, is reused without reading
the database; otherwise it is decided again from the database.

Keys are short strings: ``channel:<id>``, ``user:<id>``, ``device:<id>``, ``session:<id>``,
``catalog``, and ``*`` for a change that could touch anything (a bulk statement). Which rows
make which keys is the business of the domains (``classify``, given by the app): this module
imports no domain.

The log is fed from SQLAlchemy's own unit of work (``track``), after commit, so that no
service has to remember to announce its changes, and a rolled-back transaction announces
nothing. Changes made by another process (``attache-server`` at the console, a second server)
are not seen here: the console only adds nations, groups and users, which cannot make an
admitted delivery forbidden.

Several server processes share their changes over the bus (``server.realtime.redis_bus``):
each transaction's changes are numbered by the process that committed them (its ``origin``
and a ``seq`` counting its own), and a peer ``apply``s them to its own log, so that its caches
and its streams hear of them too. Versions are this process's own; what one process decided
is carried to another as its *frontier* (for each origin, the last of its changes the decider
had applied), which the other turns into a version of its own log (``version_before``).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

T = TypeVar("T")

ANY = "*"
CATALOG = "catalog"

# Enough for bursts of changes between a submit and its pushes; an older version is treated
# as "anything may have changed", which is always safe.
RETAINED = 4096
# An origin heard from no more for this long is forgotten: its changes are older than any
# decision still travelling (the bus refuses pushes older than a minute), and a process gone
# or restarted (a new origin) must not stay in every frontier for ever.
SILENT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Change:
    """One key a transaction changed; ``close`` asks open streams keyed by it to close (a
    revoked session or device, a disabled user) with ``reason``."""

    key: str
    close: bool = False
    reason: str = ""


Classifier = Callable[[object, str], Iterable[Change]]
"""Given a flushed ORM instance and what happened to it (``new``, ``dirty``, ``deleted``),
the changes it makes to decisions (none for most rows)."""


Exporter = Callable[[int, list[Change]], None]
"""Hears each transaction committed here, with its ``seq``: the bus sends it to the peers."""


@dataclass
class ChangeLog:
    version: int = 0
    # This process's name among its peers: random, so that a restarted process is a new one.
    origin: str = field(default_factory=lambda: secrets.token_hex(8))
    _recent: deque[tuple[int, frozenset[str]]] = field(
        default_factory=lambda: deque(maxlen=RETAINED)
    )
    _listeners: list[Callable[[list[Change]], None]] = field(default_factory=list)
    _exporters: list[Exporter] = field(default_factory=list)
    _committed: int = 0  # the seq of the last transaction committed here
    # For each origin (this process's among them), its changes applied here, retained as
    # (seq, version): both increase along each deque.
    _applied: dict[str, deque[tuple[int, int]]] = field(default_factory=dict)
    _heard: dict[str, float] = field(default_factory=dict)  # origin -> monotonic time

    def record(self, changes: list[Change]) -> int:
        """Apply one transaction's changes committed here; returns the new version."""
        if not changes:
            return self.version
        self._committed += 1
        version = self.apply(self.origin, self._committed, changes)
        for exporter in list(self._exporters):
            exporter(self._committed, changes)
        return version

    def apply(self, origin: str, seq: int, changes: list[Change]) -> int:
        """Apply one transaction's changes, committed by ``origin`` as its ``seq``-th (a peer's,
        from the bus, or this process's own from ``record``); returns the new version."""
        self.version += 1
        self._recent.append((self.version, frozenset(c.key for c in changes)))
        now = time.monotonic()
        applied = self._applied.get(origin)
        if applied is None:
            self._forget_silent_origins(now)
            applied = self._applied[origin] = deque(maxlen=RETAINED)
        applied.append((seq, self.version))
        self._heard[origin] = now
        for listener in list(self._listeners):
            listener(changes)
        return self.version

    def _forget_silent_origins(self, now: float) -> None:
        """Drop the origins silent for ``SILENT_SECONDS`` (processes gone or restarted)."""
        for origin in [o for o, heard in self._heard.items() if now - heard > SILENT_SECONDS]:
            del self._applied[origin], self._heard[origin]

    def changed_since(self, version: int, keys: Iterable[str]) -> bool:
        """Whether any change after ``version`` touched one of ``keys`` (or anything)."""
        if version == self.version:
            return False
        if not self._recent or version < self._recent[0][0] - 1:
            return True  # older than what is retained: assume the worst
        wanted = set(keys)
        wanted.update((ANY, CATALOG))
        for at, touched in reversed(self._recent):
            if at <= version:
                break
            if not touched.isdisjoint(wanted):
                return True
        return False

    def frontier(self, version: int) -> dict[str, int]:
        """For each origin, the ``seq`` of the last of its changes applied here at or before
        ``version``: what a decision read at ``version`` had seen, in terms a peer can use.
        An origin whose changes then are no longer retained is left out (a peer then takes
        every change of it as unseen, which is safe)."""
        seen: dict[str, int] = {}
        for origin, applied in self._applied.items():
            at = bisect_right(applied, version, key=lambda entry: entry[1])
            if at:
                seen[origin] = applied[at - 1][0]
        return seen

    def version_before(self, frontier: Mapping[str, int]) -> int:
        """A version of this log such that every change applied here after it may be one
        that a peer's decision with ``frontier`` had not seen, and none before it is: that
        decision holds here while nothing it depends on changed since this version. When
        that cannot be told (a change between what the peer saw and what is retained here
        is missing), a version older than anything retained: every check then fails safe."""
        before = self.version
        now = time.monotonic()
        for origin, applied in self._applied.items():
            seen = frontier.get(origin, 0)
            if applied[-1][0] <= seen:
                continue  # every change of this origin applied here, the peer had seen
            if not seen and now - self._heard[origin] > SILENT_SECONDS / 2:
                continue  # silent long before any decision still travelling was read
            at = bisect_right(applied, seen, key=lambda entry: entry[0])
            seq, version = applied[at]
            if seq != seen + 1:
                return -1  # the first change the peer had not seen is not here
            before = min(before, version - 1)
        return before

    def listen(self, listener: Callable[[list[Change]], None]) -> None:
        self._listeners.append(listener)

    def export(self, exporter: Exporter) -> None:
        self._exporters.append(exporter)


_PENDING = "attache.changes.pending"
# The execution option by which a bulk statement declares the changes it makes (a tuple of
# ``Change``), so that it is not taken for a change of anything: whoever writes it names
# every key a decision could read of the rows it touches.
DECLARES = "attache_changes"


def track(session_class: type[Session], log: ChangeLog, classify: Classifier) -> None:
    """Feed ``log`` from every transaction of ``session_class`` that commits.

    ``session_class`` should be a class of its own (one per app), so that two apps in one
    process, as in the tests, never hear each other's changes.
    """

    @event.listens_for(session_class, "after_flush")
    def _collect(session: Session, _: Any) -> None:
        pending: list[Change] = session.info.setdefault(_PENDING, [])
        for instance in session.new:
            pending.extend(classify(instance, "new"))
        for instance in session.dirty:
            if session.is_modified(instance, include_collections=False):
                pending.extend(classify(instance, "dirty"))
        for instance in session.deleted:
            pending.extend(classify(instance, "deleted"))

    @event.listens_for(session_class, "do_orm_execute")
    def _bulk(state: ORMExecuteState) -> None:
        # A bulk UPDATE or DELETE names no instances: it says what it changes (``DECLARES``),
        # or, if it touches a table that decisions read, it is taken to change anything
        # (rare, and always safe).
        if not (state.is_update or state.is_delete) or state.bind_mapper is None:
            return
        declared = state.execution_options.get(DECLARES)
        if declared is not None:
            state.session.info.setdefault(_PENDING, []).extend(declared)
            return
        if list(classify(state.bind_mapper.class_, "bulk")):
            state.session.info.setdefault(_PENDING, []).append(Change(ANY))

    @event.listens_for(session_class, "after_commit")
    def _publish(session: Session) -> None:
        changes = session.info.pop(_PENDING, None)
        if changes:
            log.record(changes)

    @event.listens_for(session_class, "after_rollback")
    def _forget(session: Session) -> None:
        with contextlib.suppress(KeyError):
            del session.info[_PENDING]


# --- caches kept honest by the log -----------------------------------------------------------

CHANGE_LOG = "attache.change_log"
_CACHES = "attache.caches"


@dataclass
class Kept(Generic[T]):
    """A cache whose entries hold while nothing they depend on changed since they were read.

    An entry is stored with the log's version read *before* its value was read from the
    database, so that a change committed meanwhile makes it stale at once, never the reverse.
    """

    log: ChangeLog
    limit: int
    _entries: OrderedDict[Hashable, tuple[int, frozenset[str], T]] = field(
        default_factory=OrderedDict
    )

    def get(self, key: Hashable) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.log.changed_since(entry[0], entry[1]):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[2]

    def put(self, key: Hashable, version: int, depends: frozenset[str], value: T) -> None:
        self._entries[key] = (version, depends, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)


def session_info(log: ChangeLog) -> dict[str, Any]:
    """What an app's sessionmaker gives every session: the change log and the caches it keeps
    honest (shared by every session of the app; ``Session.info`` is copied, its values not)."""
    return {CHANGE_LOG: log, _CACHES: {}}


def changes_of(session: AsyncSession | Session) -> ChangeLog | None:
    log = session.info.get(CHANGE_LOG)
    return log if isinstance(log, ChangeLog) else None


def kept(session: AsyncSession | Session, name: str, limit: int) -> Kept[Any] | None:
    """The app's cache called ``name`` (made on first use), or None outside an app."""
    caches: dict[str, Kept[Any]] | None = session.info.get(_CACHES)
    log = changes_of(session)
    if caches is None or log is None:
        return None
    cache = caches.get(name)
    if cache is None:
        cache = caches[name] = Kept(log, limit)
    return cache
