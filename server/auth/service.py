"""Challenge-response login with device keys, and bearer sessions stored as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from protocol import keys
from server.audit import log as audit
from server.auth import repository as auth_repo
from server.auth.models import LoginChallenge, SessionToken
from server.auth.principal import ROLE_SECURITY_OFFICER, Principal
from server.db.base import column_values, detached, utcnow
from server.db.changes import kept
from server.devices import repository as device_repo
from server.devices.models import DEVICE_ACTIVE, DEVICE_PENDING, Device
from server.directory import repository as directory_repo
from server.directory.models import User
from server.errors import AuthenticationRequired, Conflict, Expired, NotFound
from server.settings import Settings

T = TypeVar("T")

_BAD_TOKEN = "the session token is missing, expired or revoked; log in again"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", errors="replace")).digest()


@dataclass(frozen=True)
class IssuedSession:
    token: str
    row: SessionToken
    user: User


async def do_issue_challenge(
    session: AsyncSession, settings: Settings, device_id: str
) -> LoginChallenge:
    """Preconditions: none; refuses a device that is not active, saying why when it exists."""
    device = await device_repo.get_device(session, device_id)
    if device is not None and device.status == DEVICE_PENDING:
        raise await _awaits_certification(session, device)
    if device is None or device.status != DEVICE_ACTIVE:
        raise NotFound(f"no active device {device_id}", device_id=device_id)
    now = utcnow()
    challenge = LoginChallenge(
        device_id=device.id,
        nonce=secrets.token_bytes(32),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.challenge_ttl_seconds),
    )
    session.add(challenge)
    await session.flush()
    return challenge


async def _awaits_certification(session: AsyncSession, device: Device) -> Conflict:
    """What the owner of a pending device is told: whose certificate it waits for. (Whoever
    knows a device id learns its status and its nation's security officers' usernames, which
    every member of a channel with that device can see anyway.)"""
    user = await directory_repo.get_user(session, device.user_id)
    nation = user.nationality if user else None
    officers = (
        await directory_repo.holders_of_role(session, nation, ROLE_SECURITY_OFFICER)
        if nation
        else []
    )
    if nation is None:
        who = "its certification"
    elif officers:
        who = f"certification by {nation}'s security officer ({', '.join(officers)})"
    else:
        who = f"certification by {nation}'s security officer ({nation} has none yet)"
    command = f"attache device certify {device.id} --nation {nation or 'NATION'}"
    return Conflict(
        f"device {device.id} awaits {who}: read them its fingerprint and ask them to run "
        f"'{command}', then log in again",
        device_id=device.id,
        device_status=device.status,
        nation=nation,
        security_officers=officers,
    )


async def do_login(
    session: AsyncSession, settings: Settings, challenge_id: str, signature: bytes
) -> IssuedSession:
    """Consume the challenge (whatever the outcome) and open a session if the signature holds.

    Failures are audited and the consumed challenge is kept, so a challenge can never be tried
    twice.
    """
    now = utcnow()
    challenge = await auth_repo.consume_challenge(session, challenge_id, now)
    if challenge is None:
        raise Expired("the login challenge is unknown, expired or already used; ask for a new one")
    device = await device_repo.get_device(session, challenge.device_id)
    user = await directory_repo.get_user(session, device.user_id) if device else None
    payload = keys.login_payload(
        device_id=challenge.device_id,
        challenge=keys.b64u_encode(challenge.nonce),
        server_origin=settings.effective_public_url,
    )
    reasons: list[str] = []
    if device is None or user is None or device.status != DEVICE_ACTIVE:
        reasons.append("device is not active")
    elif not user.active:
        reasons.append("user account is disabled")
    elif not keys.verify_login(device.signing_key, payload, signature):
        reasons.append("signature does not verify")
    actor = audit.Actor(
        user_id=user.id if user else None,
        device_id=challenge.device_id,
        nation=user.nationality if user else None,
    )
    if reasons:
        audit.record(
            session,
            actor=actor,
            action="auth.login",
            object_type="device",
            object_id=challenge.device_id,
            decision=audit.DENY,
            reasons=reasons,
            subject_nation=actor.nation,
        )
        raise AuthenticationRequired(f"login refused: {reasons[0]}", keep_changes=True)
    assert device is not None
    assert user is not None
    token = secrets.token_urlsafe(32)
    row = SessionToken(
        token_hash=hash_token(token),
        user_id=user.id,
        device_id=device.id,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.session_ttl_seconds),
    )
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="auth.login",
        object_type="device",
        object_id=device.id,
        subject_nation=user.nationality,
    )
    await session.flush()
    return IssuedSession(token=token, row=row, user=user)


async def access_principal(
    session: AsyncSession, token: str | None, *, reading: bool = False
) -> Principal:
    """The caller of ``token``. With ``reading``, for a caller that only reads its user and
    device (the message submit): a remembered principal's own instances, detached and shared
    by every request of that session, without attaching copies to ``session``; whoever asks
    so must never change them."""
    if not token:
        raise AuthenticationRequired(_BAD_TOKEN)
    digest = hash_token(token)
    cache = kept(session, "principals", 16384)
    hit: _Remembered | None = cache.get(digest) if cache is not None else None
    if hit is not None and hit.expires_at > utcnow():
        return hit.read_only if reading else await hit.principal_in(session)
    version = cache.log.version if cache is not None else 0
    row = await auth_repo.get_session_by_hash(session, digest)
    # The lookup is by hash; compare again in constant time so that the equality the
    # database did is not the only check standing between a guess and a session.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise AuthenticationRequired(_BAD_TOKEN)
    principal = await _principal_of(session, row)
    if cache is not None:
        depends = frozenset(
            {
                f"session:{row.id}",
                f"user:{principal.user.id}",
                f"device:{principal.device.id}",
            }
        )
        cache.put(digest, version, depends, _Remembered.of(principal))
    return principal


@dataclass(frozen=True)
class _Remembered:
    """A principal as it was read, kept (by the token's hash) until its session, user or
    device changes: an authenticated request then reads nothing to know who is calling.
    Column values are kept, not the instances, which belong to the session that read them."""

    session_id: str
    expires_at: datetime
    user: dict[str, Any]
    device: dict[str, Any]

    @classmethod
    def of(cls, principal: Principal) -> _Remembered:
        return cls(
            principal.session_id,
            principal.session_expires_at,
            column_values(principal.user),
            column_values(principal.device),
        )

    @cached_property
    def read_only(self) -> Principal:
        """Detached instances made once, for ``access_principal(reading=True)``."""
        return Principal(
            user=detached(User, self.user),
            device=detached(Device, self.device),
            session_id=self.session_id,
            session_expires_at=self.expires_at,
        )

    async def principal_in(self, session: AsyncSession) -> Principal:
        user = await _attach(session, detached(User, self.user))
        device = await _attach(session, detached(Device, self.device))
        return Principal(
            user=user, device=device, session_id=self.session_id, session_expires_at=self.expires_at
        )


async def _attach(session: AsyncSession, instance: T) -> T:
    """A detached instance made a clean, persistent instance of ``session`` without a query,
    as if it had been read there: later reads in this session return it. ``add`` does that
    in place (no copy, no trip through the session's greenlet); where the session already
    holds that row, ``merge(load=False)`` keeps the one it holds."""
    if inspect(instance).key in session.identity_map:
        return await session.merge(instance, load=False)
    session.add(instance)
    return instance


async def access_session(session: AsyncSession, session_id: str) -> Principal:
    """The principal of a session already authenticated (an open stream), as it is now."""
    row = await session.get(SessionToken, session_id)
    if row is None:
        raise AuthenticationRequired(_BAD_TOKEN)
    return await _principal_of(session, row)


async def _principal_of(session: AsyncSession, row: SessionToken) -> Principal:
    if row.revoked_at is not None or row.expires_at <= utcnow():
        raise AuthenticationRequired(_BAD_TOKEN)
    device = await device_repo.get_device(session, row.device_id)
    user = await directory_repo.get_user(session, row.user_id)
    if device is None or device.status != DEVICE_ACTIVE or user is None or not user.active:
        raise AuthenticationRequired(_BAD_TOKEN)
    return Principal(user=user, device=device, session_id=row.id, session_expires_at=row.expires_at)


async def do_logout(session: AsyncSession, principal: Principal) -> None:
    row = await session.get(SessionToken, principal.session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
    audit.record(
        session,
        actor=principal.actor,
        action="auth.logout",
        object_type="session",
        object_id=principal.session_id,
        subject_nation=principal.user.nationality,
    )


__all__ = [
    "IssuedSession",
    "access_principal",
    "access_session",
    "do_issue_challenge",
    "do_login",
    "do_logout",
    "hash_token",
]
