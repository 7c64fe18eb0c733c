"""FastAPI dependencies: the request's database session and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.principal import Principal
from server.auth.service import access_principal
from server.db.engine import get_session
from server.settings import Settings

SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="session token from POST /v1/auth/sessions")


async def _principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await access_principal(session, credentials.credentials if credentials else None)


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


PrincipalDep = Annotated[Principal, Depends(_principal)]
SettingsDep = Annotated[Settings, Depends(_settings)]
