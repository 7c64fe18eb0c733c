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
admitted delivery forbidden; several processes share changes over Redis (a later issue).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
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


@dataclass
class ChangeLog:
    version: int = 0
    _recent: deque[tuple[int, frozenset[str]]] = field(
        default_factory=lambda: deque(maxlen=RETAINED)
    )
    _listeners: list[Callable[[list[Change]], None]] = field(default_factory=list)

    def record(self, changes: list[Change]) -> int:
        """Apply one committed transaction's changes; returns the new version."""
        if not changes:
            return self.version
        self.version += 1
        self._recent.append((self.version, frozenset(c.key for c in changes)))
        for listener in list(self._listeners):
            listener(changes)
        return self.version

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

    def listen(self, listener: Callable[[list[Change]], None]) -> None:
        self._listeners.append(listener)


_PENDING = "attache.changes.pending"


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
        # A bulk UPDATE or DELETE names no instances: if it touches a table that decisions
        # read, assume it changed anything (rare, and always safe).
        if not (state.is_update or state.is_delete) or state.bind_mapper is None:
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
