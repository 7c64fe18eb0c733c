from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from protocol import keys
from server.auth.dependencies import PrincipalDep, SessionDep, SettingsDep, limited_per_address
from server.devices import service
from server.devices.schemas import (
    CertificateSubmit,
    DeviceEnrol,
    DeviceRead,
    DeviceRevoke,
    EnrolmentCodeRead,
    TransparencyRead,
)
from server.directory.service import access_user
from server.ratelimit import ENROL
from server.schemas import MAX_JSON_INT

router = APIRouter(prefix="/v1", tags=["devices"])


@router.post("/users/{user_id}/enrolment-codes", status_code=status.HTTP_201_CREATED)
async def create_enrolment_code(
    user_id: str, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> EnrolmentCodeRead:
    user = await access_user(session, user_id)
    issued = await service.do_issue_enrolment_code(session, principal, settings, user)
    return EnrolmentCodeRead(
        user_id=user.id, username=user.username, code=issued.code, expires_at=issued.row.expires_at
    )


@router.post(
    "/devices", status_code=status.HTTP_201_CREATED, dependencies=[limited_per_address(ENROL)]
)
async def enrol_device(body: DeviceEnrol, session: SessionDep, settings: SettingsDep) -> DeviceRead:
    device = await service.do_enrol_device(
        session,
        settings,
        username=body.username,
        code=body.code,
        name=body.name,
        signing_key=keys.b64u_decode(body.signing_key),
        encryption_key=keys.b64u_decode(body.encryption_key),
        proof=keys.b64u_decode(body.proof),
    )
    return DeviceRead.of(device, await access_user(session, device.user_id))


@router.get("/devices")
async def list_devices(
    principal: PrincipalDep,
    session: SessionDep,
    status_: Annotated[
        Literal["pending", "active", "revoked"] | None, Query(alias="status")
    ] = None,
) -> list[DeviceRead]:
    rows = await service.list_devices(session, principal, status=status_)
    return [DeviceRead.of(device, user) for device, user in rows]


@router.get("/devices/{device_id}")
async def get_device(device_id: str, principal: PrincipalDep, session: SessionDep) -> DeviceRead:
    device = await service.access_device(session, principal, device_id)
    return DeviceRead.of(device, await access_user(session, device.user_id))


@router.get("/devices/{device_id}/transparency")
async def device_transparency(
    device_id: Annotated[str, Path(max_length=128)],
    _: PrincipalDep,
    session: SessionDep,
    old: Annotated[int, Query(ge=0, le=MAX_JSON_INT)] = 0,
    witness: Annotated[list[str] | None, Query(max_length=64)] = None,
    min_witnesses: Annotated[int | None, Query(ge=1, le=64)] = None,
) -> TransparencyRead:
    """Any signed-in member: the proofs of the device's current status at the latest
    checkpoint (or the latest that ``min_witnesses`` of the ``witness`` names cosigned), and
    of that checkpoint's consistency with size ``old`` (PROTOCOL.md §19.3)."""
    bundle = await service.access_transparency(
        session, device_id, old, witness or (), min_witnesses
    )
    return TransparencyRead.model_validate(bundle)


@router.put("/devices/{device_id}/certificate")
async def certify_device(
    device_id: str, body: CertificateSubmit, session: SessionDep
) -> DeviceRead:
    # Deliberately unauthenticated: the nation authority's signature is the authorisation.
    device = await service.do_certify_device(session, device_id, body.certificate)
    return DeviceRead.of(device, await access_user(session, device.user_id))


@router.post("/devices/{device_id}/revoke")
async def revoke_device(
    device_id: str, body: DeviceRevoke, principal: PrincipalDep, session: SessionDep
) -> DeviceRead:
    device = await service.access_device(session, principal, device_id)
    device = await service.do_revoke_device(session, principal, device, reason=body.reason)
    return DeviceRead.of(device, await access_user(session, device.user_id))
