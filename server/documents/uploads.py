"""Uploads in flight: how many may stream at once, and the removal of abandoned ones.

An upload streams to the blob store without holding a database connection (service.py), so
the database pool bounds nothing here: this gate does. It admits at most ``max_total``
streams in this process and ``max_per_device`` per device, and one stream per version (two
writers of one blob would interleave); beyond that the answer is 429 with Retry-After.

The counts are per server process: with several processes behind a load balancer, each
admits up to its own caps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.documents.service import do_expire_uploads
from server.documents.storage import BlobStore
from server.errors import Conflict, TooManyRequests

log = logging.getLogger(__name__)

# When to try again after a refusal: a stream's slot frees when it ends, and a stalled one
# ends within the body read timeout, so a few seconds is a fair guess for a busy server.
RETRY_AFTER_SECONDS = 5


@dataclass
class UploadGate:
    max_total: int
    max_per_device: int
    _streams: dict[str, str] = field(default_factory=dict)  # version id -> device id
    _per_device: Counter[str] = field(default_factory=Counter)

    @property
    def active(self) -> frozenset[str]:
        """The versions streaming now (never expired under a stream)."""
        return frozenset(self._streams)

    @contextlib.contextmanager
    def admit(self, device_id: str, version_id: str, retry_after: int) -> Iterator[None]:
        """Hold a place for one stream of ``version_id`` from ``device_id`` while the block
        runs. Raises TooManyRequests beyond a cap, Conflict if that version streams already
        (its earlier connection may be dead but not yet timed out: retry after)."""
        if version_id in self._streams:
            raise Conflict(
                "an upload of this version is in progress; try again once it has ended",
                version_id=version_id,
                retry_after=retry_after,
            )
        if self._per_device[device_id] >= self.max_per_device:
            raise TooManyRequests(
                f"a device may upload {self.max_per_device} versions at once; finish one first",
                retry_after=RETRY_AFTER_SECONDS,
                limit="uploads-per-device",
            )
        if len(self._streams) >= self.max_total:
            raise TooManyRequests(
                f"the server takes {self.max_total} uploads at once; try again later",
                retry_after=RETRY_AFTER_SECONDS,
                limit="uploads",
            )
        self._streams[version_id] = device_id
        self._per_device[device_id] += 1
        try:
            yield
        finally:
            del self._streams[version_id]
            self._per_device[device_id] -= 1
            if not self._per_device[device_id]:
                del self._per_device[device_id]


async def run_expiry(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: BlobStore,
    gate: UploadGate,
    expiry_seconds: float,
    stop: asyncio.Event,
) -> None:
    """Remove abandoned uploads until ``stop`` is set, looking twice per expiry period (at
    most every five minutes); a failed run is logged and tried again."""
    interval = min(expiry_seconds / 2, 300.0)
    while not stop.is_set():
        try:
            await do_expire_uploads(sessionmaker, store, expiry_seconds, busy=gate.active)
        except Exception:
            log.exception("removing abandoned uploads failed; will retry")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
