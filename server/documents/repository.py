"""SQL for documents. Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.channels.models import AudienceEnvelope
from server.documents.models import COMPLETE, UPLOADING, Document, DocumentVersion
from server.releases.models import GrantEnvelope, ItemGrant


async def get_document(session: AsyncSession, document_id: str) -> Document | None:
    return await session.get(Document, document_id)


async def get_version(
    session: AsyncSession, version_id: str, *, lock: bool = False
) -> DocumentVersion | None:
    stmt = select(DocumentVersion).where(DocumentVersion.id == version_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def record_progress(
    session: AsyncSession, version_id: str, received: int, now: datetime
) -> bool:
    """Set how much of an unfinished version is stored; False if it is no longer unfinished
    (discarded, expired or completed meanwhile)."""
    stmt = (
        update(DocumentVersion)
        .where(DocumentVersion.id == version_id, DocumentVersion.status == UPLOADING)
        .values(received=received, progressed_at=now)
    )
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def idle_uploads(
    session: AsyncSession, before: datetime, limit: int
) -> Sequence[DocumentVersion]:
    """Unfinished versions with no progress since ``before``, oldest first."""
    stmt = (
        select(DocumentVersion)
        .where(DocumentVersion.status == UPLOADING, DocumentVersion.progressed_at < before)
        .order_by(DocumentVersion.progressed_at)
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


async def delete_if_idle(session: AsyncSession, version_id: str, before: datetime) -> bool:
    """Delete an unfinished version only if it has still made no progress since ``before``
    (one statement, so progress recorded meanwhile keeps it)."""
    stmt = delete(DocumentVersion).where(
        DocumentVersion.id == version_id,
        DocumentVersion.status == UPLOADING,
        DocumentVersion.progressed_at < before,
    )
    return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def latest_number(session: AsyncSession, document_id: str) -> int:
    stmt = select(func.max(DocumentVersion.number)).where(
        DocumentVersion.document_id == document_id
    )
    found = (await session.execute(stmt)).scalar_one()
    return int(found or 0)


async def complete_versions_for_device(
    session: AsyncSession, channel_id: str, device_id: str
) -> Sequence[DocumentVersion]:
    """Complete versions in a channel whose audience, or a grant of which, holds ``device_id``."""
    in_audience = select(AudienceEnvelope.audience_id).where(
        AudienceEnvelope.device_id == device_id
    )
    granted = (
        select(ItemGrant.item_id)
        .join(GrantEnvelope, GrantEnvelope.grant_id == ItemGrant.id)
        .where(GrantEnvelope.device_id == device_id, ItemGrant.item_type == "document_version")
    )
    stmt = (
        select(DocumentVersion)
        .join(Document, Document.id == DocumentVersion.document_id)
        .where(
            Document.channel_id == channel_id,
            DocumentVersion.status == COMPLETE,
            DocumentVersion.audience_id.in_(in_audience) | DocumentVersion.id.in_(granted),
        )
        .order_by(Document.created_at, DocumentVersion.document_id, DocumentVersion.number)
    )
    return (await session.execute(stmt)).scalars().all()
