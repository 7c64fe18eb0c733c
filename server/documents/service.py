"""Documents: versioned, labelled, end-to-end encrypted files of any size.

A version is announced with its signed header (releasability checked exactly as for a
message, through ``check_release``), its ciphertext is uploaded in whole encrypted chunks and
may resume after a dropped connection, and it becomes visible only when the upload is complete
and the sender's signature over the stored ciphertext verifies. Downloads are decided again,
and audited, every time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from protocol import stream
from protocol.catalog import Catalog
from protocol.labels import Label
from protocol.policy import decide
from server.audit import log as audit
from server.auth.principal import Principal
from server.auth.service import access_principal
from server.channels import repository as channel_repo
from server.channels.models import Audience, Channel
from server.channels.service import check_release, container_of, subject_of
from server.db.base import utcnow
from server.directory import repository as directory_repo
from server.documents import repository as repo
from server.documents.models import COMPLETE, UPLOADING, Document, DocumentVersion
from server.documents.storage import BlobBusy, BlobStore, BlobTooLarge
from server.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, RequestTimeout
from server.releases import repository as release_repo
from server.releases.models import ItemGrant

if TYPE_CHECKING:
    from server.documents.uploads import UploadGate


def _not_found(version_id: str) -> NotFound:
    return NotFound(f"no document version {version_id!r} for you", version_id=version_id)


async def do_begin_version(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    channel: Channel,
    header_json: dict[str, Any],
) -> DocumentVersion:
    """Announce a version: its signed header names the document, container, sender, audience,
    label and size. Version 1 creates the document; later versions follow the last complete
    one. Idempotent on the version id, so a client that lost the answer can ask again."""
    try:
        header = stream.check_document_header(header_json)
    except stream.DocumentError as exc:
        raise InvalidInput(f"document header refused: {exc}", field="header") from exc
    if header.container != channel.id:
        raise InvalidInput("the header names another container", field="header.container")
    if header.sender_device != principal.device.id or header.sender_user != principal.user.id:
        raise InvalidInput("a version is sent by the submitting device", field="header")
    existing = await repo.get_version(session, header.version_id)
    if existing is not None:
        if existing.header != header_json or existing.sender_device_id != principal.device.id:
            raise Conflict(f"version id {header.version_id} is already used")
        return existing
    document = await repo.get_document(session, header.document_id)
    latest = await repo.latest_number(session, header.document_id) if document else 0
    if document is not None and document.channel_id != channel.id:
        raise Conflict(f"document id {header.document_id} is already used")
    if header.version_number != latest + 1:
        raise Conflict(
            f"the next version of this document is {latest + 1}, not {header.version_number}",
            next_version=latest + 1,
        )
    release = await check_release(
        session,
        principal,
        catalog,
        channel,
        label_json=header.label,
        audience_id=header.audience_id,
        action="document.upload",
        object_type="document_version",
        object_id=header.version_id,
    )
    if document is None:
        session.add(
            Document(id=header.document_id, channel_id=channel.id, created_by=principal.user.id)
        )
        await session.flush()
    version = DocumentVersion(
        id=header.version_id,
        document_id=header.document_id,
        number=header.version_number,
        audience_id=release.audience.id,
        sender_user_id=principal.user.id,
        sender_device_id=principal.device.id,
        label=release.label.canonical(),
        label_banner=release.banner,
        header=dict(header_json),
        size=header.size,
        ciphertext_size=header.ciphertext_size,
        received=0,
        status=UPLOADING,
    )
    session.add(version)
    await session.flush()
    return version


async def access_upload(
    session: AsyncSession, principal: Principal, version_id: str, *, lock: bool = True
) -> DocumentVersion:
    """A version being uploaded, for the device that announced it only."""
    version = await repo.get_version(session, version_id, lock=lock)
    if version is None or version.sender_device_id != principal.device.id:
        raise _not_found(version_id)
    if version.status != UPLOADING:
        raise Conflict("this version is complete", version_id=version_id)
    return version


def stands_at(store: BlobStore, version: DocumentVersion) -> int:
    """Where an unfinished upload stands: its record, or further where whole chunks beyond it
    were stored before a crash cut the record short (the blob is synced piece by piece; the
    record follows every ``RECORD_EVERY`` bytes)."""
    return max(version.received, store.stored(version.id, version.ciphertext_size))


# How often a streaming upload records its progress (``received``, ``progressed_at``) in the
# database: the blob itself holds the exact figure in between.
RECORD_EVERY = 1 << 20


@dataclass(frozen=True)
class Upload:
    """An unfinished version as its uploader sees it: with the audience and the uploader's own
    envelope in it, so that a client that lost its state can resume the same version."""

    version: DocumentVersion
    received: int  # where it stands (stands_at), which may be beyond the version's record
    audience: Audience
    envelope: bytes | None


async def access_upload_state(
    session: AsyncSession, principal: Principal, store: BlobStore, version_id: str
) -> Upload:
    version = await access_upload(session, principal, version_id, lock=False)
    audience = await channel_repo.get_audience(session, version.audience_id)
    envelope = await channel_repo.envelope_for(session, version.audience_id, principal.device.id)
    assert audience is not None
    return Upload(
        version, stands_at(store, version), audience, envelope.envelope if envelope else None
    )


@asynccontextmanager
async def _unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A short transaction of its own (committed, or rolled back on an exception), for work
    that must not hold a connection across a long stream."""
    async with sessionmaker() as session, session.begin():
        yield session


class BodyStalled(Exception):
    """Raised by a request body's iterator when no piece arrived within the read timeout."""


async def do_receive_content(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: BlobStore,
    gate: UploadGate,
    token: str | None,
    version_id: str,
    offset: int,
    pieces: AsyncIterator[bytes],
    retry_after: int,
) -> DocumentVersion:
    """Append ciphertext at ``offset``, which must be where the upload stands.

    No database connection is held while the body streams: the caller is authenticated and
    the version read in one short transaction, the bytes go to the blob store (synced as they
    land, so a crash of the server keeps them), and progress is recorded every
    ``RECORD_EVERY`` bytes and at the end in short transactions of their own. Whatever
    happens to the connection, what was stored is kept up to the last whole chunk and
    ``received`` says where to resume. A body that stalls (BodyStalled from ``pieces``) is
    kept likewise and answered with RequestTimeout. The ``gate`` admits the stream or
    refuses it (429, or 409 while another stream of the same version runs).
    """
    async with _unit_of_work(sessionmaker) as session:
        principal = await access_principal(session, token)
        await access_upload(session, principal, version_id, lock=False)
    with (
        gate.admit(principal.device.id, version_id, retry_after),
        _sole_writer(store, version_id, retry_after),
    ):
        # Read again once admitted: no other stream of this version runs now, in this process
        # or another sharing the blob store.
        async with _unit_of_work(sessionmaker) as session:
            version = await access_upload(session, principal, version_id, lock=False)
        version.received = stands_at(store, version)
        if offset != version.received:
            raise Conflict(
                f"the upload stands at byte {version.received}; resume from there",
                received=version.received,
            )
        recorded = -1  # a resumed upload may stand beyond its record: record it at the end

        async def durable(received: int) -> None:
            nonlocal recorded
            await _record_progress(sessionmaker, store, version_id, received)
            recorded = received

        stalled = False
        try:
            reached = await store.append(
                version_id,
                offset,
                pieces,
                version.ciphertext_size,
                on_progress=durable,
                every=RECORD_EVERY,
            )
        except BlobTooLarge as exc:
            # Keep what the last record says: a client that overran the announced size is
            # not trusted with what came after it.
            kept = max(recorded, version.received)
            store.truncate(version_id, kept)
            async with _unit_of_work(sessionmaker) as session:
                await repo.record_progress(session, version_id, kept, utcnow())
            raise PayloadTooLarge(
                f"the version's ciphertext is {version.ciphertext_size} bytes: {exc}",
                received=kept,
            ) from exc
        except BodyStalled:
            stalled, reached = True, store.size(version_id)
        if reached != version.ciphertext_size:
            # Keep whole encrypted chunks only: a resumed upload then starts on a chunk boundary
            # and never rewrites part of a chunk already stored.
            reached -= reached % stream.ENCRYPTED_CHUNK_SIZE
            store.truncate(version_id, reached)
        if reached != recorded:
            await _record_progress(sessionmaker, store, version_id, reached)
        async with _unit_of_work(sessionmaker) as session:
            version = await access_upload(session, principal, version_id, lock=False)
    if stalled:
        raise RequestTimeout(
            f"the body stalled; {version.received} bytes are stored, resume from there",
            received=version.received,
        )
    return version


@contextmanager
def _sole_writer(store: BlobStore, version_id: str, retry_after: int) -> Iterator[None]:
    """The blob for this stream alone, across server processes; else 409 as ``UploadGate``
    answers within one."""
    try:
        with store.writing(version_id):
            yield
    except BlobBusy:
        raise Conflict(
            "an upload of this version is in progress; try again once it has ended",
            version_id=version_id,
            retry_after=retry_after,
        ) from None


async def _record_progress(
    sessionmaker: async_sessionmaker[AsyncSession], store: BlobStore, version_id: str, received: int
) -> None:
    """Record that ``received`` bytes of an unfinished version are stored. Raises NotFound
    (after removing the blob written meanwhile) if the version was discarded or expired while
    it streamed, Conflict if it was completed."""
    async with _unit_of_work(sessionmaker) as session:
        if await repo.record_progress(session, version_id, received, utcnow()):
            return
        left = await repo.get_version(session, version_id)
    if left is None:
        store.delete(version_id)
        raise _not_found(version_id)
    raise Conflict("this version is complete", version_id=version_id)


async def do_complete_version(
    session: AsyncSession,
    principal: Principal,
    catalog: Catalog,
    store: BlobStore,
    version: DocumentVersion,
    trailer_json: dict[str, Any],
) -> DocumentVersion:
    """Finish an upload: every byte is there and the sender's signature covers exactly the
    stored ciphertext, and the audience is still exactly the eligible devices. A signature
    that does not match discards the upload (the blob and the version)."""
    version.received = stands_at(store, version)
    if version.received != version.ciphertext_size:
        raise Conflict(
            f"{version.received} of {version.ciphertext_size} bytes are uploaded",
            received=version.received,
        )
    try:
        trailer = stream.SealedDocumentTrailer.from_json(trailer_json)
    except (stream.DocumentError, ValueError) as exc:
        raise InvalidInput(f"trailer refused: {exc}", field="trailer") from exc
    content_hash, length = await store.content_hash(version.id)
    try:
        if length != version.ciphertext_size:
            raise stream.DocumentError("the stored ciphertext has the wrong length")
        stream.verify_document(version.header, trailer, content_hash, principal.device.signing_key)
    except stream.DocumentError as exc:
        store.delete(version.id)
        await session.delete(version)
        raise InvalidInput(
            f"the signature does not cover the uploaded ciphertext ({exc}); the upload was "
            "discarded",
            keep_changes=True,
        ) from exc
    channel = await _channel_of(session, version)
    release = await check_release(
        session,
        principal,
        catalog,
        channel,
        label_json=version.label,
        audience_id=version.audience_id,
        action="document.upload",
        object_type="document_version",
        object_id=version.id,
    )
    version.trailer = trailer.to_json()
    version.status = COMPLETE
    version.completed_at = utcnow()
    audit.record(
        session,
        actor=principal.actor,
        action="document.upload",
        object_type="document_version",
        object_id=version.id,
        subject_nation=principal.user.nationality,
        label=version.label,
        label_banner=version.label_banner,
        details={
            "channel_id": channel.id,
            "document_id": version.document_id,
            "number": version.number,
            "size": version.size,
            "audience_id": version.audience_id,
            **release.details(),
        },
    )
    await session.flush()
    return version


async def do_discard_upload(
    session: AsyncSession, store: BlobStore, version: DocumentVersion
) -> None:
    """Abandon an unfinished upload: nothing of it remains."""
    store.delete(version.id)
    await session.delete(version)


# The server itself, removing what was abandoned (no user or device acts).
EXPIRY = audit.Actor(user_id=None, device_id=None, nation=None, via="upload-expiry")
EXPIRED_BATCH = 100


async def do_expire_uploads(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: BlobStore,
    expiry_seconds: float,
    *,
    busy: frozenset[str] = frozenset(),
    now: datetime | None = None,
) -> list[str]:
    """Remove every unfinished version that has made no progress for ``expiry_seconds``
    (except those streaming now, ``busy``): the row and its event ``document.upload_expired``
    in one transaction each, then the stored ciphertext. Returns the versions removed."""
    before = (now or utcnow()) - timedelta(seconds=expiry_seconds)
    removed: list[str] = []
    passed = set(busy)  # streaming, or made progress since they were read: kept
    while True:
        async with _unit_of_work(sessionmaker) as session:
            idle = [
                v
                for v in await repo.idle_uploads(session, before, EXPIRED_BATCH)
                if v.id not in passed
            ]
        if not idle:
            return removed
        for version in idle:
            # Held while it goes, so that no stream of it starts meanwhile; one streaming
            # through another process (which ``busy`` cannot know of) holds it: kept.
            try:
                with store.writing(version.id, create=False):
                    async with _unit_of_work(sessionmaker) as session:
                        if not await repo.delete_if_idle(session, version.id, before):
                            passed.add(version.id)
                            continue
                        sender = await directory_repo.get_user(session, version.sender_user_id)
                        audit.record(
                            session,
                            actor=EXPIRY,
                            action="document.upload_expired",
                            object_type="document_version",
                            object_id=version.id,
                            subject_nation=sender.nationality if sender else None,
                            label=version.label,
                            label_banner=version.label_banner,
                            details={
                                "document_id": version.document_id,
                                "number": version.number,
                                "sender_device_id": version.sender_device_id,
                                "received": version.received,
                                "ciphertext_size": version.ciphertext_size,
                                "idle_since": version.progressed_at.isoformat(),
                                "expiry_seconds": expiry_seconds,
                            },
                        )
                    store.delete(version.id)
                    removed.append(version.id)
            except BlobBusy:
                passed.add(version.id)


async def _channel_of(session: AsyncSession, version: DocumentVersion) -> Channel:
    document = await repo.get_document(session, version.document_id)
    channel = await channel_repo.get_channel(session, document.channel_id) if document else None
    assert channel is not None
    return channel


@dataclass(frozen=True)
class Access:
    version: DocumentVersion
    channel: Channel
    audience: Audience
    envelope: bytes | None  # None when a grant gave this device the version's key
    sender_certificate: dict[str, Any] | None
    label: dict[str, Any]  # the version's label now (its last released label version)
    banner: str
    grant: ItemGrant | None = None
    grant_envelope: bytes | None = None
    grantor_certificate: dict[str, Any] | None = None


async def access_version(
    session: AsyncSession, principal: Principal, catalog: Catalog, version_id: str
) -> Access:
    """A complete version this device may open now: the device holds its key (its audience,
    or a grant of a release) and its user is allowed by the decision made again now, against
    the version's label now. Every attempt is audited."""
    version = await repo.get_version(session, version_id)
    if version is None or version.status != COMPLETE:
        raise _not_found(version_id)
    channel = await _channel_of(session, version)
    envelope = await channel_repo.envelope_for(session, version.audience_id, principal.device.id)
    granted = await release_repo.grant_envelope_for(session, version.id, principal.device.id)
    latest = (await release_repo.grants_for(session, version.id))[-1:]
    label_json = latest[0].label if latest else version.label
    banner = latest[0].label_banner if latest else version.label_banner
    container = await container_of(session, channel, catalog)
    label = Label.from_canonical(label_json, catalog)
    decision = decide(subject_of(principal.user, catalog), label, container, catalog)
    holds = envelope is not None or granted is not None
    reasons = list(decision.reasons) + ([] if holds else ["device not in the version's audience"])
    audit.record(
        session,
        actor=principal.actor,
        action="document.access",
        object_type="document_version",
        object_id=version.id,
        decision=audit.DENY if reasons else audit.ALLOW,
        reasons=reasons,
        subject_nation=principal.user.nationality,
        label=label_json,
        label_banner=banner,
        details={"channel_id": channel.id, "document_id": version.document_id},
    )
    if reasons:
        raise NotFound(
            f"no document version {version_id!r} for you", keep_changes=True, version_id=version_id
        )
    audience = await channel_repo.get_audience(session, version.audience_id)
    sender = await channel_repo.device(session, version.sender_device_id)
    assert audience is not None
    grant, grant_envelope, grantor = None, None, None
    if envelope is None and granted is not None:
        grant, grant_envelope = granted[0], granted[1].envelope
        grantor = await channel_repo.device(session, grant.grantor_device_id)
    return Access(
        version=version,
        channel=channel,
        audience=audience,
        envelope=envelope.envelope if envelope else None,
        sender_certificate=sender.certificate if sender else None,
        label=label_json,
        banner=banner,
        grant=grant,
        grant_envelope=grant_envelope,
        grantor_certificate=grantor.certificate if grantor else None,
    )


async def list_versions(
    session: AsyncSession, principal: Principal, catalog: Catalog, channel: Channel
) -> list[DocumentVersion]:
    """The complete versions this device could open now. Versions it could not are not
    listed at all: their existence is not released to it either."""
    container = await container_of(session, channel, catalog)
    subject = subject_of(principal.user, catalog)
    visible = []
    for version in await repo.complete_versions_for_device(
        session, channel.id, principal.device.id
    ):
        latest = (await release_repo.grants_for(session, version.id))[-1:]
        label = Label.from_canonical(latest[0].label if latest else version.label, catalog)
        if decide(subject, label, container, catalog).allowed:
            visible.append(version)
    return visible
