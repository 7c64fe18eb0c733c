"""Sealed submissions kept on disk until the server answers them.

A send whose answer is lost (the connection dropped, or this process was killed) may or may
not have landed. Resending exactly the sealed bytes is always safe: the server stores a message
id once and answers a byte-identical resubmission from what it stored. Re-sealing is not: it
makes new ciphertext under the same id, which the server refuses (409), or a new id, which is a
duplicate. So a ``Messenger`` with an ``Outbox`` writes each sealed submission here, durably,
before submitting it, and deletes it once the server has answered (accepted or refused).

One JSON file per message id, written to a temporary file, flushed to disk and renamed, so a
crash leaves either the whole submission or none. The files hold ciphertext, never plaintext;
to recognise a re-run of the same send they hold ``request``: a MAC of what was asked (channel,
label, content type, reply-to, text) under a key derived from this device's private keys, so
that it reveals nothing of the text to whoever reads the directory without those keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import keys
from protocol.canonical import canonical_json, digest

_REQUEST_KEY_CONTEXT = "attache/client/outbox-request-key/v1"
VERSION = 1


def request_tag(
    device_keys: keys.DeviceKeys,
    *,
    channel_id: str,
    banner: str,
    content_type: str,
    reply_to: str | None,
    text: str,
) -> str:
    """What identifies one send's request without revealing its text (hex HMAC-SHA256)."""
    key = digest(_REQUEST_KEY_CONTEXT, device_keys.to_private_bytes())
    asked = {
        "channel_id": channel_id,
        "banner": banner,
        "content_type": content_type,
        "reply_to": reply_to,
        "text": text,
    }
    return hmac.new(key, canonical_json(asked), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Kept:
    """One unanswered submission as kept on disk."""

    message_id: str
    channel_id: str
    sealed: dict[str, Any]
    roster_tag: str | None
    banner: str
    request: str | None
    saved_at: float  # time.time() when sealed: resent oldest first


class OutboxError(Exception):
    """The outbox directory is unusable (a plain sentence)."""


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, message_id: str) -> Path:
        if not message_id or any(c not in "0123456789abcdef-" for c in message_id):
            raise OutboxError(f"{message_id!r} is not a message id (a lower-case UUID)")
        return self.directory / f"{message_id}.json"

    def put(self, kept: Kept) -> None:
        """Write ``kept`` durably: when this returns, a crash cannot lose it."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(kept.message_id)
        record = {
            "version": VERSION,
            "message_id": kept.message_id,
            "channel_id": kept.channel_id,
            "sealed": kept.sealed,
            "roster_tag": kept.roster_tag,
            "banner": kept.banner,
            "request": kept.request,
            "saved_at": kept.saved_at,
        }
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(record).encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        self._sync_directory()

    def remove(self, message_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(message_id).unlink()
            self._sync_directory()

    def get(self, message_id: str) -> Kept | None:
        path = self._path(message_id)
        return self._read(path) if path.exists() else None

    def pending(self, channel_id: str | None = None) -> list[Kept]:
        """Unanswered submissions (of one channel), oldest first."""
        if not self.directory.is_dir():
            return []
        found = [self._read(p) for p in self.directory.glob("*.json")]
        return sorted(
            (k for k in found if channel_id is None or k.channel_id == channel_id),
            key=lambda k: (k.saved_at, k.message_id),
        )

    def _read(self, path: Path) -> Kept:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("version") != VERSION:
                raise ValueError(f"version {record.get('version')!r} is not {VERSION}")
            return Kept(
                message_id=str(record["message_id"]),
                channel_id=str(record["channel_id"]),
                sealed=dict(record["sealed"]),
                roster_tag=record["roster_tag"],
                banner=str(record["banner"]),
                request=record["request"],
                saved_at=float(record["saved_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutboxError(
                f"the unanswered submission {path} is damaged ({exc}); move it aside to go on"
            ) from exc

    def _sync_directory(self) -> None:
        # The rename or unlink itself must reach the disk, not only the file's contents.
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
