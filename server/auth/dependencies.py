"""FastAPI dependencies: the request's database session, the authenticated principal, and the
rate limits keyed by either."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.principal import Principal
from server.auth.service import access_principal
from server.db.engine import get_session
from server.ratelimit import RateLimits
from server.settings import Settings

SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="session token from POST /v1/auth/sessions")


async def _principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await access_principal(session, credentials.credentials if credentials else None)


def bearer_token(request: Request) -> str | None:
    """The session token of ``Authorization: Bearer <token>``, as ``HTTPBearer`` reads it,
    for the route that reads its caller without dependencies (the message submit)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


async def check_limit(request: Request, action: str, principal: Principal) -> None:
    """``limited_per_device`` for a route that reads its caller without dependencies."""
    await _limits(request).check(action, principal.device.id, scope="device", request=request.scope)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PrincipalDep = Annotated[Principal, Depends(_principal)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def _limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


def limited_per_device(action: str) -> Any:
    """A route dependency counting ``action`` against the caller's device (429 when spent).

    It resolves the principal the route itself uses (FastAPI resolves a dependency once per
    request), from memory for a known token, so a refused request never reaches the database.
    """

    async def check(request: Request, principal: PrincipalDep) -> None:
        await _limits(request).check(
            action, principal.device.id, scope="device", request=request.scope
        )

    return Depends(check)


def limited_per_address(action: str) -> Any:
    """A route dependency counting ``action`` against the client's address (429 when spent).

    The address is the TCP peer's, or the one a trusted proxy forwarded (uvicorn's
    ``--forwarded-allow-ips``; docs/operations.md)."""

    async def check(request: Request) -> None:
        address = request.client.host if request.client else "unknown"
        await _limits(request).check(action, address, scope="address", request=request.scope)

    return Depends(check)
