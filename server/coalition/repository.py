"""SQL for the coalition policy. Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.coalition.models import CoalitionPolicyProposal, CoalitionPolicyVersion


async def latest(session: AsyncSession) -> CoalitionPolicyVersion | None:
    stmt = (
        select(CoalitionPolicyVersion)
        .order_by(CoalitionPolicyVersion.policy_version.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def latest_digest(session: AsyncSession) -> tuple[int, str] | None:
    """The latest published version's number and digest, without its document."""
    stmt = (
        select(CoalitionPolicyVersion.policy_version, CoalitionPolicyVersion.digest)
        .order_by(CoalitionPolicyVersion.policy_version.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).one_or_none()
    return None if row is None else (row[0], row[1])


async def get(session: AsyncSession, policy_version: int) -> CoalitionPolicyVersion | None:
    return await session.get(CoalitionPolicyVersion, policy_version)


async def get_proposal(session: AsyncSession, digest: str) -> CoalitionPolicyProposal | None:
    return await session.get(CoalitionPolicyProposal, digest)


async def list_proposals(
    session: AsyncSession, policy_version: int
) -> Sequence[CoalitionPolicyProposal]:
    stmt = (
        select(CoalitionPolicyProposal)
        .where(CoalitionPolicyProposal.policy_version == policy_version)
        .order_by(CoalitionPolicyProposal.proposed_at, CoalitionPolicyProposal.digest)
    )
    return (await session.execute(stmt)).scalars().all()
