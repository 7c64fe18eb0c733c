"""SQL for challenges and sessions. Repositories never commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import LoginChallenge, SessionToken


async def get_challenge(session: AsyncSession, challenge_id: str) -> LoginChallenge | None:
    # FOR UPDATE so two concurrent logins with one challenge cannot both consume it on
    # PostgreSQL; SQLite serialises writers anyway and ignores the clause.
    stmt = select(LoginChallenge).where(LoginChallenge.id == challenge_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_session_by_hash(session: AsyncSession, token_hash: bytes) -> SessionToken | None:
    stmt = select(SessionToken).where(SessionToken.token_hash == token_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def revoke_device_sessions(session: AsyncSession, device_id: str, now: datetime) -> None:
    await session.execute(
        update(SessionToken)
        .where(SessionToken.device_id == device_id, SessionToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_user_sessions(session: AsyncSession, user_id: str, now: datetime) -> None:
    await session.execute(
        update(SessionToken)
        .where(SessionToken.user_id == user_id, SessionToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
