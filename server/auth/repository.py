"""SQL for challenges and sessions. Repositories never commit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import LoginChallenge, SessionToken
from server.db.changes import DECLARES, Change


async def consume_challenge(
    session: AsyncSession, challenge_id: str, now: datetime
) -> LoginChallenge | None:
    """Mark an unused, unexpired challenge used and return it; None if there is none.

    One statement, so that of any number of concurrent logins with one challenge exactly one
    consumes it: PostgreSQL re-checks ``used_at IS NULL`` once the first writer commits, and
    SQLite runs the UPDATE under its single write lock. (A ``SELECT … FOR UPDATE`` followed by
    a write does not do this on SQLite: the driver begins the transaction only at the write,
    so every reader sees the challenge unused.)
    """
    stmt = (
        update(LoginChallenge)
        .where(
            LoginChallenge.id == challenge_id,
            LoginChallenge.used_at.is_(None),
            LoginChallenge.expires_at > now,
        )
        .values(used_at=now)
        .returning(LoginChallenge)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_session_by_hash(session: AsyncSession, token_hash: bytes) -> SessionToken | None:
    stmt = select(SessionToken).where(SessionToken.token_hash == token_hash)
    return (await session.execute(stmt)).scalar_one_or_none()


async def revoke_device_sessions(session: AsyncSession, device_id: str, now: datetime) -> None:
    """End every session of a device, in one statement. Every decision that rests on one of
    those sessions (the principal kept for a token, a push decided for a stream) rests on the
    device too, and the device's streams close by the device: so the statement declares a
    closing change of the device (``server.db.changes``), not a change of anything, which
    would drop every cache and tell every stream that any roster may have changed."""
    closing = Change(f"device:{device_id}", close=True, reason="the device was revoked")
    await session.execute(
        update(SessionToken)
        .where(SessionToken.device_id == device_id, SessionToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(**{DECLARES: (closing,)})
    )
