"""Documents from a program: upload a file of any size as a labelled, end-to-end encrypted
version, and download and verify one, each in bounded memory.

    async with await Messenger.open(Keystore(), passphrase="...") as m:
        version = await Documents(m).put("committee", Path("brief.pdf"),
                                         label="NATO SECRET//REL TO USA, GBR")
        opened = await Documents(m).get(version["id"], Path("copy.pdf"))

Uploads resume after a dropped connection: the ciphertext is re-made from the unchanged file
(the same header, key and counter nonces give the same bytes) and sent from where the server
stands. A file that changes between attempts is never re-encrypted under the same header (that
would reuse nonces): the upload is discarded instead.
"""

from __future__ import annotations

import contextlib
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


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while piece := handle.read(READ_SIZE):
            yield piece


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


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
        """Upload ``path`` as a new document, or as the next version of ``document_id``."""
        client = self.m.client
        info = await client.channel(channel)
        channel_id = str(info["id"])
        banner = label or str(info["default_label"])
        try:
            parsed = parse_label(banner, self.m.catalog, originator=self.m.nationality)
            ceiling = Label.from_canonical(info["ceiling_canonical"], self.m.catalog)
        except LabelError as exc:
            raise MessagingError(f"label {banner!r}: {exc}") from exc
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
        stamp = _stamp(path)
        fields: dict[str, Any] = {
            "document_id": document_id or str(uuid.uuid4()),
            "version_id": str(uuid.uuid4()),
            "version_number": number,
            "container": channel_id,
            "sender_user": self.m.user_id,
            "sender_device": self.m.device_id,
            "created_at": datetime.now(UTC),
            "label": parsed,
            "filename": filename or path.name,
            "content_type": content_type,
            "size": stamp[0],
        }
        for attempt in (1, 2):
            roster = await client.roster(channel_id)
            verified, excluded = await self.m._check_roster(roster)
            container = Container(channel_id, ceiling, frozenset(str(e["user_id"]) for e in roster))
            eligible = self.m._eligible(verified, parsed, container)
            audience = await self.m._audience(channel_id, eligible)
            fields["audience_id"] = audience.audience_id
            encryptor = self._encryptor(audience.key, fields)
            try:
                version = await client.begin_document_version(channel_id, encryptor.header)
                break
            except ApiError as exc:
                self.m._audiences.pop(channel_id, None)
                if exc.code == "audience-incomplete" and attempt == 1:
                    continue
                if exc.code == "audience-incomplete":
                    self.m._check_insistence(exc, excluded)
                raise
        for _ in range(ATTEMPTS):
            if _stamp(path) != stamp:
                await client.discard_upload(version["id"])
                raise MessagingError(f"{path} changed during the upload; it was discarded")
            encryptor = self._encryptor(audience.key, fields)
            offset = int(version["received"])
            try:
                version = await client.upload_content(
                    version["id"], offset, self._ciphertext(encryptor, path, offset, progress)
                )
            except ConnectionFailed:
                version = await client.upload_state(version["id"])
                continue
            if int(version["received"]) == int(version["ciphertext_size"]):
                return await client.complete_upload(version["id"], encryptor.finish().to_json())
            version = await client.upload_state(version["id"])
        raise ConnectionFailed(
            f"the upload of {path} kept failing; run the same command again to resume"
        )

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
            if grant is not None:
                released = await self.m._open_grant(grant, version["header"], header.label)
                banner, released_by = released.banner, released.grantor
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
            original_banner=signed_banner if released_by is not None else None,
        )
