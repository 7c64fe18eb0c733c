"""The blob store: document ciphertext on disk, written and read in bounded memory.

One directory that every server process reaches (on one machine, the data directory's
``blobs/``; across machines, a shared filesystem: docs/deployment.md, which also says what an
object store would need). One writer per blob across all of them: ``writing`` holds an
exclusive ``flock`` on the blob's file, which other processes (on this machine, or on others
through NFS's locks) see.

Blobs are opaque. An unfinished blob's whole encrypted chunks are what its upload has
received: each piece is synced as it lands, and the database's ``received`` follows behind
(server/documents/service.py takes the larger). A write past the expected size is refused,
and an interrupted write is cut back to whole encrypted chunks, so a resumed upload never
overlaps a partial chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from protocol.stream import ENCRYPTED_CHUNK_SIZE, ContentHasher

READ_SIZE = CHUNK = ENCRYPTED_CHUNK_SIZE


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _write(handle: BinaryIO, piece: bytes) -> None:
    handle.write(piece)
    _sync(handle)


class BlobTooLarge(Exception):
    """More bytes arrived than the version's ciphertext size."""


class BlobBusy(Exception):
    """Another stream, in this process or another, is writing the blob."""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def writing(self, blob_id: str, *, create: bool = True) -> Iterator[None]:
        """Hold the blob for one writer while the block runs, across every process sharing
        this store; raises BlobBusy at once if another holds it. The lock goes with the file
        descriptor, so a writer that dies lets go with it. Without ``create``, a blob not
        stored yet is not made to lock it (no one writes it)."""
        path = self.path(blob_id)
        if not create and not path.exists():
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BlobBusy(blob_id) from None
            yield
        finally:
            os.close(fd)

    def path(self, blob_id: str) -> Path:
        safe = "".join(ch for ch in blob_id if ch.isalnum() or ch == "-")
        if safe != blob_id or not safe:
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / safe[:2] / safe

    def size(self, blob_id: str) -> int:
        try:
            return self.path(blob_id).stat().st_size
        except FileNotFoundError:
            return 0

    def stored(self, blob_id: str, limit: int) -> int:
        """How much of a blob is whole encrypted chunks (all of it, once it has reached
        ``limit``): what a resumed upload may keep of what is on disk."""
        size = min(self.size(blob_id), limit)
        return size if size == limit else size - size % CHUNK

    async def append(
        self,
        blob_id: str,
        offset: int,
        pieces: AsyncIterator[bytes],
        limit: int,
        on_progress: Callable[[int], Awaitable[None]] | None = None,
        every: int = 1 << 20,
    ) -> int:
        """Write ``pieces`` at ``offset`` (truncating anything after it); returns the size
        reached, whatever happened to the stream. Raises BlobTooLarge past ``limit``.

        Every piece is synced to disk as it is written (a piece is what the server read
        from the socket at once, a few hundred KiB at most), so the blob itself is the
        durable record of what arrived: after a crash of the process nothing written is lost,
        after one of the machine at most the piece in flight. ``on_progress`` is told the
        whole chunks stored each time they have grown by ``every`` bytes, and when the blob
        reaches ``limit``; an exception from it ends the write.
        """
        path = self.path(blob_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "r+b")
        position = told = offset
        try:
            handle.truncate(offset)
            handle.seek(offset)
            async for piece in pieces:
                if position + len(piece) > limit:
                    raise BlobTooLarge(f"more than the announced {limit} bytes")
                await asyncio.to_thread(_write, handle, piece)
                position += len(piece)
                whole = position if position == limit else position - position % CHUNK
                if on_progress is not None and (
                    whole - told >= every or (whole == limit and whole > told)
                ):
                    told = whole
                    await on_progress(whole)
            return position
        finally:
            _sync(handle)
            handle.close()

    def truncate(self, blob_id: str, size: int) -> None:
        path = self.path(blob_id)
        if path.exists():
            with path.open("r+b") as handle:
                handle.truncate(size)

    async def read(self, blob_id: str, start: int = 0) -> AsyncIterator[bytes]:
        with self.path(blob_id).open("rb") as handle:
            handle.seek(start)
            while piece := await asyncio.to_thread(handle.read, READ_SIZE):
                yield piece

    async def content_hash(self, blob_id: str) -> tuple[bytes, int]:
        """The signed content hash of a stored blob (protocol.stream), and its length."""

        def compute() -> tuple[bytes, int]:
            hasher = ContentHasher()
            with self.path(blob_id).open("rb") as handle:
                while piece := handle.read(1 << 20):
                    hasher.update(piece)
            return hasher.digest(), hasher.length

        return await asyncio.to_thread(compute)

    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)
