"""Documents from a program: upload a file of any size as a labelled, end-to-end encrypted
version, and download and verify one, each in bounded memory.

    async with await Messenger.open(Keystore(), passphrase="...") as m:
        version = await Documents(m).put("committee", Path("brief.pdf"),
                                         label="NATO SECRET//REL TO USA, GBR")
        opened = await Documents(m).get(version["id"], Path("copy.pdf"))

Uploads resume after a dropped connection, and after either side stopped: the ciphertext is
re-made from the unchanged file (the same header, key and counter nonces give the same bytes)
and sent from where the server stands. A small note in the keystore's home names the
unfinished version, so that ``put`` run again with the same file continues it. A file that
changes between attempts is never re-encrypted under the same header (that would reuse
nonces): the upload is discarded instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clients.sdk._client import ApiError, ConnectionFailed
from clients.sdk.messaging import MessagingError, Messenger, _Unverifiable
from protocol import envelopes, keys, stream
from protocol.labels import Label, LabelError, parse_label, render_label
from protocol.policy import Container

READ_SIZE = stream.CHUNK_SIZE
ATTEMPTS = 5
MAX_WAIT = 60.0  # longest wait, in seconds, that a refusal's Retry-After makes an upload take
UPLOADS_DIR = "uploads"  # in the keystore's home: a note per unfinished upload
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class OpenedDocument:
    path: Path
    version_id: str
    document_id: str
    number: int
    filename: str
    size: int
    banner: str
    sender: str
    sender_nation: str
    released_by: str | None = None  # the grantor's username, when a grant released it here
    original_banner: str | None = None  # the label the sender signed, when released by a grant
    # The member whose client gave this device the key by a history grant (it joined after the
    # version was shared; PROTOCOL.md §16.7), else None.
    shared_by: str | None = None


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while piece := handle.read(READ_SIZE):
            yield piece


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def _retry_after(exc: ApiError) -> float | None:
    """How long to wait before trying an upload again after this refusal, or None if trying
    again cannot help: a stalled body (408) at once; too many uploads (429), or another
    stream of the version still running (409), after the time the server says; an upload
    that stands elsewhere (409) at once, from there."""
    if exc.status == 408:
        return 0.0
    if exc.status == 409 and "received" in exc.problem:
        return 0.0
    if exc.status in (409, 429) and "retry_after" in exc.problem:
        with contextlib.suppress(TypeError, ValueError):
            return min(max(float(exc.problem["retry_after"]), 0.0), MAX_WAIT)
        return MAX_WAIT
    return None


@dataclass(frozen=True)
class _Resumable:
    """The note, in the keystore's home, of an upload begun and not yet complete: which
    version, and the file and label it was begun for. No key or content: the rest comes back
    from the server (the header and this device's envelope of the audience)."""

    path: Path

    @classmethod
    def at(cls, home: Path, channel_id: str, path: Path, document_id: str | None) -> _Resumable:
        what = "\x1f".join((channel_id, str(path.resolve()), document_id or ""))
        name = hashlib.sha256(what.encode()).hexdigest()[:32]
        return cls(home / UPLOADS_DIR / f"{name}.json")

    def load(self) -> dict[str, Any] | None:
        try:
            found = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) and "version_id" in found else None

    def save(self, version_id: str, stamp: tuple[int, int], banner: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        note = {"version_id": version_id, "stamp": list(stamp), "label": banner}
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(note, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


class Documents:
    def __init__(self, messenger: Messenger) -> None:
        self.m = messenger

    async def versions(self, channel: str) -> list[dict[str, Any]]:
        """The versions in ``channel`` this device can open (the others are not shown)."""
        info = await self.m.client.channel(channel)
        return await self.m.client.document_versions(str(info["id"]))

    async def put(
        self,
        channel: str,
        path: Path,
        *,
        label: str | None = None,
        document_id: str | None = None,
        filename: str | None = None,
        content_type: str = "application/octet-stream",
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload ``path`` as a new document, or as the next version of ``document_id``.

        An upload that did not finish (the server or this program stopped, the line dropped)
        is resumed by calling ``put`` again with the same channel, file, label and document:
        the same version continues from where the server stands, provided the file is
        unchanged. A changed file discards the unfinished version and starts a new one.
        """
        client = self.m.client
        info = await client.channel(channel)
        channel_id = str(info["id"])
        banner = label or str(info["default_label"])
        try:
            parsed = parse_label(banner, self.m.catalog, originator=self.m.nationality)
            ceiling = Label.from_canonical(info["ceiling_canonical"], self.m.catalog)
        except LabelError as exc:
            raise MessagingError(f"label {banner!r}: {exc}") from exc
        stamp = _stamp(path)
        record = _Resumable.at(self.m.keystore.home, channel_id, path, document_id)
        resumed = await self._resume(record, stamp, banner, filename or path.name, content_type)
        if isinstance(resumed, dict):
            return resumed  # it was complete already: only the answer had been lost
        if resumed is not None:
            version, fields, audience_key = resumed
        else:
            version, fields, audience_key = await self._begin(
                record,
                channel,
                channel_id,
                parsed,
                ceiling,
                banner,
                stamp,
                document_id=document_id,
                filename=filename or path.name,
                content_type=content_type,
            )
        return await self._upload(record, version, fields, audience_key, path, stamp, progress)

    async def _begin(
        self,
        record: _Resumable,
        channel: str,
        channel_id: str,
        parsed: Label,
        ceiling: Label,
        banner: str,
        stamp: tuple[int, int],
        *,
        document_id: str | None,
        filename: str,
        content_type: str,
    ) -> tuple[dict[str, Any], dict[str, Any], bytes]:
        """Announce a new version; remembered on disk first, so that it can be resumed."""
        client = self.m.client
        number = 1
        if document_id is not None:
            known = [
                v
                for v in await client.document_versions(channel_id)
                if v["document_id"] == document_id
            ]
            if not known:
                raise MessagingError(f"no document {document_id} you can see in {channel}")
            number = max(int(v["number"]) for v in known) + 1
        fields: dict[str, Any] = {
            "document_id": document_id or str(uuid.uuid4()),
            "version_id": str(uuid.uuid4()),
            "version_number": number,
            "container": channel_id,
            "sender_user": self.m.user_id,
            "sender_device": self.m.device_id,
            "created_at": datetime.now(UTC),
            "label": parsed,
            "filename": filename,
            "content_type": content_type,
            "size": stamp[0],
        }
        record.save(fields["version_id"], stamp, banner)
        try:
            for attempt in (1, 2):
                roster = await client.roster(channel_id)
                verified, excluded = await self.m._check_roster(roster)
                container = Container(
                    channel_id, ceiling, frozenset(str(e["user_id"]) for e in roster)
                )
                eligible = self.m._eligible(verified, parsed, container)
                audience = await self.m._audience(channel_id, eligible)
                fields["audience_id"] = audience.audience_id
                encryptor = self._encryptor(audience.key, fields)
                try:
                    version = await client.begin_document_version(channel_id, encryptor.header)
                    return version, fields, audience.key
                except ApiError as exc:
                    self.m._audiences.pop(channel_id, None)
                    if exc.code == "audience-incomplete" and attempt == 1:
                        continue
                    if exc.code == "audience-incomplete":
                        self.m._check_insistence(exc, excluded)
                    raise
        except ApiError:
            record.forget()  # refused: there is nothing to resume
            raise
        raise AssertionError("unreachable")

    async def _resume(
        self,
        record: _Resumable,
        stamp: tuple[int, int],
        banner: str,
        filename: str,
        content_type: str,
    ) -> tuple[dict[str, Any], dict[str, Any], bytes] | dict[str, Any] | None:
        """The unfinished version ``record`` names, ready to continue (the version, the
        encryptor's fields and the audience key, all recovered from the server), or the
        version itself if it was completed, or None when there is none to resume."""
        client = self.m.client
        remembered = record.load()
        if remembered is None:
            return None
        version_id = remembered["version_id"]
        if remembered.get("stamp") != list(stamp) or remembered.get("label") != banner:
            # Another file, or another label: never re-encrypt under the old header.
            await self._discard(record, version_id)
            return None
        try:
            state = await client.upload_state(version_id)
        except ApiError as exc:
            if exc.status == 409:
                record.forget()
                access = await client.open_document_version(version_id)
                return dict(access["version"])
            if exc.status == 404:  # never begun, discarded or expired
                record.forget()
                return None
            raise
        try:
            header = stream.check_document_header(state["header"])
            if header.sender_device != self.m.device_id or header.size != stamp[0]:
                raise _Unverifiable("the version is not this device's upload of this file")
            audience = state["audience"]
            audience_key = envelopes.open_audience_envelope(
                self.m._device_keys,
                self.m.device_id,
                audience["header"],
                keys.b64u_decode(audience["signature"]),
                keys.b64u_decode(audience["envelope"]),
                self.m._device_keys.public().signing_key,
            )
            fields: dict[str, Any] = {
                "document_id": header.document_id,
                "version_id": header.version_id,
                "version_number": header.version_number,
                "container": header.container,
                "sender_user": header.sender_user,
                "sender_device": header.sender_device,
                "audience_id": header.audience_id,
                "created_at": header.created_at,
                "label": dict(header.label),
                "filename": filename,
                "content_type": content_type,
                "size": header.size,
            }
            # The header made again must be the one the server holds, byte for byte: then
            # the ciphertext made again is the one already partly stored.
            if self._encryptor(audience_key, fields).header != state["header"]:
                raise _Unverifiable("the version was begun with other details")
        except (
            _Unverifiable,
            envelopes.EnvelopeError,
            stream.DocumentError,
            KeyError,
            TypeError,
            ValueError,
        ):
            await self._discard(record, version_id)
            return None
        return state, fields, audience_key

    async def _discard(self, record: _Resumable, version_id: str) -> None:
        with contextlib.suppress(ApiError):
            await self.m.client.discard_upload(version_id)
        record.forget()

    async def _upload(
        self,
        record: _Resumable,
        version: dict[str, Any],
        fields: dict[str, Any],
        audience_key: bytes,
        path: Path,
        stamp: tuple[int, int],
        progress: Progress | None,
    ) -> dict[str, Any]:
        """Send the ciphertext from where the server stands until it is all there, resuming
        after a dropped line and waiting when the server asks to, then complete the version."""
        client = self.m.client
        failures = 0
        while True:
            if _stamp(path) != stamp:
                await self._discard(record, version["id"])
                raise MessagingError(f"{path} changed during the upload; it was discarded")
            encryptor = self._encryptor(audience_key, fields)
            offset = int(version["received"])
            wait = 0.0
            try:
                version = await client.upload_content(
                    version["id"], offset, self._ciphertext(encryptor, path, offset, progress)
                )
            except ConnectionFailed:
                failures += 1
            except ApiError as exc:
                retry = _retry_after(exc)
                if retry is None:
                    raise
                failures, wait = failures + 1, retry
            else:
                if int(version["received"]) == int(version["ciphertext_size"]):
                    done = await client.complete_upload(version["id"], encryptor.finish().to_json())
                    record.forget()
                    return done
                failures += 1
            if failures >= ATTEMPTS:
                raise ConnectionFailed(
                    f"the upload of {path} kept failing; run the same command again to resume"
                )
            await asyncio.sleep(wait)
            try:
                version = await client.upload_state(version["id"])
            except ConnectionFailed as exc:
                raise ConnectionFailed(
                    f"the upload of {path} was interrupted ({exc}); run the same command again "
                    "to resume"
                ) from exc

    def _encryptor(self, audience_key: bytes, fields: dict[str, Any]) -> stream.DocumentEncryptor:
        return stream.DocumentEncryptor(self.m._device_keys, audience_key, **fields)

    @staticmethod
    async def _ciphertext(
        encryptor: stream.DocumentEncryptor, path: Path, offset: int, progress: Progress | None
    ) -> AsyncIterator[bytes]:
        """The whole ciphertext, made again from the file, yielded from ``offset`` on (the
        bytes before it feed the content hash the signature covers)."""
        total = stream.ciphertext_size(path.stat().st_size)
        position = 0
        for chunk in encryptor.encrypt_chunks(_read_file(path)):
            end = position + len(chunk)
            if end > offset:
                yield chunk[max(0, offset - position) :]
                if progress is not None:
                    progress(end, total)
            position = end

    async def get(
        self, version_id: str, destination: Path, progress: Progress | None = None
    ) -> OpenedDocument:
        """Download, verify and decrypt a version into ``destination``.

        The plaintext goes to a temporary file beside it, which replaces ``destination`` only
        once every chunk, the whole length and the sender's signature have been checked.
        """
        access = await self.m.client.open_document_version(version_id)
        version = access["version"]
        try:
            body = await self.m._verify_certificate(
                access.get("sender_certificate"), datetime.now(UTC)
            )
            header = stream.check_document_header(version["header"])
            trailer = stream.SealedDocumentTrailer.from_json(version["trailer"])
            if body.device_id != header.sender_device or body.user_id != header.sender_user:
                raise _Unverifiable("the sender's certificate is for another device or user")
            audience = access["audience"]
            audience_header = envelopes.check_audience_header(audience["header"])
            if (
                audience_header.audience_id != header.audience_id
                or audience_header.creator_device != header.sender_device
                or audience_header.container != header.container
            ):
                raise _Unverifiable("the version came with an audience its sender did not make")
            label = Label.from_canonical(header.label, self.m.catalog)
            banner = signed_banner = render_label(label, self.m.catalog)
            if label.originator != body.nationality or version["label"] != banner:
                raise _Unverifiable("the label shown is not the one the sender's nation signed")
            signing_key = body.device_keys.signing_key
            grant = access.get("grant")
            released_by: str | None = None
            shared_by: str | None = None
            if grant is not None:
                released = await self.m._open_grant(grant, version["header"], header.label)
                banner = released.banner
                if released.history:
                    shared_by = released.grantor
                else:
                    released_by = released.grantor
                if access.get("label") != banner:
                    raise _Unverifiable(
                        f"the label shown is not the one {released.grantor} released it as"
                    )
                decryptor = stream.DocumentDecryptor(
                    version["header"], trailer, released.item_key, signing_key
                )
            else:
                audience_key = envelopes.open_audience_envelope(
                    self.m._device_keys,
                    self.m.device_id,
                    audience["header"],
                    keys.b64u_decode(audience["signature"]),
                    keys.b64u_decode(audience["envelope"]),
                    signing_key,
                )
                decryptor = stream.DocumentDecryptor.with_audience_key(
                    version["header"], trailer, audience_key, signing_key
                )
        except (
            _Unverifiable,
            envelopes.EnvelopeError,
            stream.DocumentError,
            LabelError,
            KeyError,
            TypeError,
            ValueError,
        ) as exc:
            raise MessagingError(f"version {version_id} cannot be trusted: {exc}") from exc
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".attache-", dir=destination.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                done = 0
                async for piece in decryptor.adecrypt_chunks(
                    self.m.client.download_content(version_id)
                ):
                    out.write(piece)
                    done += len(piece)
                    if progress is not None:
                        progress(done, header.size)
            decryptor.finish()
            os.replace(temporary, destination)
        except stream.DocumentError as exc:
            raise MessagingError(f"version {version_id} failed verification: {exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return OpenedDocument(
            path=destination,
            version_id=header.version_id,
            document_id=header.document_id,
            number=header.version_number,
            filename=header.filename,
            size=header.size,
            banner=banner,
            sender=body.username,
            sender_nation=body.nationality,
            released_by=released_by,
            original_banner=signed_banner if banner != signed_banner else None,
            shared_by=shared_by,
        )
