"""SQL for documents. Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.channels.models import AudienceEnvelope
from server.documents.models import COMPLETE, Document, DocumentVersion


async def get_document(session: AsyncSession, document_id: str) -> Document | None:
    return await session.get(Document, document_id)


async def get_version(
    session: AsyncSession, version_id: str, *, lock: bool = False
) -> DocumentVersion | None:
    stmt = select(DocumentVersion).where(DocumentVersion.id == version_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def latest_number(session: AsyncSession, document_id: str) -> int:
    stmt = select(func.max(DocumentVersion.number)).where(
        DocumentVersion.document_id == document_id
    )
    found = (await session.execute(stmt)).scalar_one()
    return int(found or 0)


async def complete_versions_for_device(
    session: AsyncSession, channel_id: str, device_id: str
) -> Sequence[DocumentVersion]:
    """Complete versions in a channel whose audience holds ``device_id``."""
    stmt = (
        select(DocumentVersion)
        .join(Document, Document.id == DocumentVersion.document_id)
        .join(
            AudienceEnvelope,
            (AudienceEnvelope.audience_id == DocumentVersion.audience_id)
            & (AudienceEnvelope.device_id == device_id),
        )
        .where(Document.channel_id == channel_id, DocumentVersion.status == COMPLETE)
        .order_by(Document.created_at, DocumentVersion.document_id, DocumentVersion.number)
    )
    return (await session.execute(stmt)).scalars().all()
