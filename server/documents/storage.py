"""The blob store: document ciphertext on disk, written and read in bounded memory.

Blobs are opaque; the database records how much of each is trustworthy (``received``). A
write past the expected size is refused, and an interrupted write is cut back to whole
encrypted chunks, so a resumed upload never overlaps a partial chunk.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

from protocol.stream import ENCRYPTED_CHUNK_SIZE, ContentHasher

READ_SIZE = CHUNK = ENCRYPTED_CHUNK_SIZE


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


class BlobTooLarge(Exception):
    """More bytes arrived than the version's ciphertext size."""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

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

    async def append(
        self,
        blob_id: str,
        offset: int,
        pieces: AsyncIterator[bytes],
        limit: int,
        on_durable: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        """Write ``pieces`` at ``offset`` (truncating anything after it); returns the size
        reached, whatever happened to the stream. Raises BlobTooLarge past ``limit``.

        Each time the blob grows past another whole encrypted chunk (or reaches ``limit``),
        what was written is synced to disk and then ``on_durable`` is told how many bytes,
        from the start, are whole chunks on disk: a crash loses at most the chunk in flight.
        An exception from ``on_durable`` ends the write.
        """
        path = self.path(blob_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "r+b")
        position = durable = offset
        try:
            handle.truncate(offset)
            handle.seek(offset)
            async for piece in pieces:
                if position + len(piece) > limit:
                    raise BlobTooLarge(f"more than the announced {limit} bytes")
                view = memoryview(piece)
                while view:
                    # A piece may hold several chunks (the socket is read 256 KiB at a time):
                    # write up to the next chunk boundary, and put each chunk on record before
                    # writing the next, so that what is on disk is never more than a chunk
                    # ahead of the record.
                    take = len(view) if on_durable is None else CHUNK - position % CHUNK
                    part, view = view[:take], view[take:]
                    await asyncio.to_thread(handle.write, part)
                    position += len(part)
                    whole = position if position == limit else position - position % CHUNK
                    if on_durable is not None and whole > durable:
                        await asyncio.to_thread(_sync, handle)
                        durable = whole
                        await on_durable(whole)
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
