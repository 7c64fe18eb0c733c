from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from protocol import keys
from protocol.catalog import Catalog
from server.auth.dependencies import PrincipalDep, SessionDep
from server.coalition.service import policy_in_force
from server.devices.service import do_set_clearance
from server.directory import repository as repo
from server.directory import service
from server.directory.schemas import (
    CatalogRead,
    ClearanceUpdate,
    GroupCreate,
    GroupRead,
    NationCreate,
    NationRead,
    OfficeCreate,
    OfficeRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from server.schemas import NationCode

router = APIRouter(prefix="/v1", tags=["directory"])


async def _catalog(request: Request, session: SessionDep) -> Catalog:
    return await service.load_catalog(session, request.app.state.catalog)


CatalogDep = Annotated[Catalog, Depends(_catalog)]


@router.get("/me")
async def me(principal: PrincipalDep, catalog: CatalogDep) -> UserRead:
    return UserRead.of(principal.user, service.clearance_banner(principal.user, catalog))


@router.get("/catalog")
async def get_catalog(request: Request, session: SessionDep, _: PrincipalDep) -> CatalogRead:
    """The label catalog in force: the TOML clients parse, plus its nations and groups
    (``Catalog.from_toml(toml).with_directory(nations, groups)`` rebuilds it): the latest
    coalition policy's, once one is published, else this directory's."""
    catalog = await service.load_catalog(session, request.app.state.catalog)
    in_force = await policy_in_force(session)
    if in_force is not None:
        policy = in_force.policy
        return CatalogRead(
            version=catalog.version,
            toml=policy.catalog_toml,
            nations=sorted(policy.nations),
            groups={name: list(members) for name, members in policy.groups.items()},
        )
    directory = await repo.list_groups(session)
    return CatalogRead(
        version=catalog.version,
        toml=request.app.state.settings.catalog_toml(),
        nations=[n.code for n in await repo.list_nations(session)],
        groups={name: members for name, (_, members) in directory.items()},
    )


@router.get("/nations")
async def list_nations(session: SessionDep) -> list[NationRead]:
    # Public on purpose: authority public keys are what every client pins and verifies
    # certificates against, and a device being enrolled has no session yet.
    return [NationRead.of(n) for n in await repo.list_nations(session)]


@router.post("/nations", status_code=status.HTTP_201_CREATED)
async def create_nation(
    body: NationCreate, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> NationRead:
    nation = await service.do_create_nation(
        session,
        principal,
        catalog,
        code=body.code,
        name=body.name,
        authority_key=keys.b64u_decode(body.authority_key),
    )
    return NationRead.of(nation)


@router.get("/groups")
async def list_groups(_: PrincipalDep, session: SessionDep, catalog: CatalogDep) -> list[GroupRead]:
    return [GroupRead(**vars(v)) for v in await service.list_groups(session, catalog)]


@router.post("/groups", status_code=status.HTTP_201_CREATED)
async def create_group(
    body: GroupCreate, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> GroupRead:
    view = await service.do_create_group(
        session,
        principal,
        catalog,
        name=body.name,
        members=body.members,
        description=body.description,
    )
    return GroupRead(**vars(view))


@router.get("/offices")
async def list_offices(
    _: PrincipalDep, session: SessionDep, nation: Annotated[NationCode | None, Query()] = None
) -> list[OfficeRead]:
    return [OfficeRead.of(o) for o in await repo.list_offices(session, nation)]


@router.post("/offices", status_code=status.HTTP_201_CREATED)
async def create_office(
    body: OfficeCreate, principal: PrincipalDep, session: SessionDep
) -> OfficeRead:
    office = await service.do_create_office(
        session, principal, nation=body.nation, name=body.name, host=body.host
    )
    return OfficeRead.of(office)


@router.get("/users")
async def list_users(
    _: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
    nation: Annotated[NationCode | None, Query()] = None,
) -> list[UserRead]:
    users = await repo.list_users(session, nation)
    return [UserRead.of(u, service.clearance_banner(u, catalog)) for u in users]


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(
    body: UserCreate, principal: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> UserRead:
    user = await service.do_create_user(
        session,
        principal,
        catalog,
        username=body.username,
        display_name=body.display_name,
        nationality=body.nationality,
        office_id=body.office_id,
        clearance=body.clearance,
        roles=body.roles,
    )
    return UserRead.of(user, service.clearance_banner(user, catalog))


@router.get("/users/{user_id}")
async def get_user(
    user_id: str, _: PrincipalDep, session: SessionDep, catalog: CatalogDep
) -> UserRead:
    user = await service.access_user(session, user_id)
    return UserRead.of(user, service.clearance_banner(user, catalog))


@router.patch("/users/{user_id}")
async def update_user(
    user_id: str,
    body: UserUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> UserRead:
    user = await service.access_user(session, user_id)
    user = await service.do_update_user(
        session,
        principal,
        user,
        display_name=body.display_name,
        office_id=body.office_id,
        roles=body.roles,
        active=body.active,
    )
    return UserRead.of(user, service.clearance_banner(user, catalog))


@router.put("/users/{user_id}/clearance")
async def set_clearance(
    user_id: str,
    body: ClearanceUpdate,
    principal: PrincipalDep,
    session: SessionDep,
    catalog: CatalogDep,
) -> UserRead:
    user = await service.access_user(session, user_id)
    user = await do_set_clearance(
        session,
        principal,
        catalog,
        user,
        clearance=body.clearance,
        certificates=body.certificates,
    )
    return UserRead.of(user, service.clearance_banner(user, catalog))
