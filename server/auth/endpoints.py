from __future__ import annotations

from fastapi import APIRouter, Request, status

from protocol import keys
from server.auth import service
from server.auth.dependencies import PrincipalDep, SessionDep, SettingsDep, limited_per_address
from server.auth.schemas import ChallengeCreate, ChallengeRead, SessionCreate, SessionRead
from server.directory.schemas import UserRead
from server.directory.service import clearance_banner, load_catalog
from server.ratelimit import LOGIN

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/challenges",
    status_code=status.HTTP_201_CREATED,
    dependencies=[limited_per_address(LOGIN)],
)
async def create_challenge(
    body: ChallengeCreate, session: SessionDep, settings: SettingsDep
) -> ChallengeRead:
    challenge = await service.do_issue_challenge(session, settings, body.device_id)
    return ChallengeRead(
        challenge_id=challenge.id,
        challenge=keys.b64u_encode(challenge.nonce),
        server=settings.effective_public_url,
        expires_at=challenge.expires_at,
    )


@router.post(
    "/sessions", status_code=status.HTTP_201_CREATED, dependencies=[limited_per_address(LOGIN)]
)
async def create_session(
    body: SessionCreate, session: SessionDep, settings: SettingsDep, request: Request
) -> SessionRead:
    issued = await service.do_login(
        session, settings, body.challenge_id, keys.b64u_decode(body.signature)
    )
    # The user as GET /v1/me gives it, clearance banner included.
    catalog = await load_catalog(session, request.app.state.catalog)
    return SessionRead(
        token=issued.token,
        expires_at=issued.row.expires_at,
        device_id=issued.row.device_id,
        user=UserRead.of(issued.user, clearance_banner(issued.user, catalog)),
    )


@router.delete("/sessions/current", status_code=status.HTTP_204_NO_CONTENT)
async def delete_session(principal: PrincipalDep, session: SessionDep) -> None:
    await service.do_logout(session, principal)
