"""SQL for the coalition policy. Repositories never commit."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.coalition.models import CoalitionPolicyVersion


async def latest(session: AsyncSession) -> CoalitionPolicyVersion | None:
    stmt = (
        select(CoalitionPolicyVersion)
        .order_by(CoalitionPolicyVersion.policy_version.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get(session: AsyncSession, policy_version: int) -> CoalitionPolicyVersion | None:
    return await session.get(CoalitionPolicyVersion, policy_version)
