from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from server.directory.models import Nation, Office, User
from server.schemas import (
    B64u,
    GroupName,
    LabelText,
    NationCode,
    ReadModel,
    ShortText,
    StrictModel,
    Username,
)

Role = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]


class CatalogRead(ReadModel):
    version: str
    toml: str
    nations: list[str]
    groups: dict[str, list[str]]


class NationCreate(StrictModel):
    code: NationCode
    name: ShortText
    authority_key: B64u = Field(description="the nation's Ed25519 enrolment authority public key")


class NationRead(ReadModel):
    code: str
    name: str
    authority_key: str
    authority_key_id: str
    created_at: datetime

    @classmethod
    def of(cls, nation: Nation) -> NationRead:
        from protocol.keys import b64u_encode

        return cls(
            code=nation.code,
            name=nation.name,
            authority_key=b64u_encode(nation.authority_key),
            authority_key_id=nation.authority_key_id,
            created_at=nation.created_at,
        )


class GroupCreate(StrictModel):
    name: GroupName
    members: Annotated[list[NationCode], Field(min_length=1, max_length=300)]
    description: Annotated[str, Field(max_length=200)] = ""


class GroupRead(ReadModel):
    name: str
    members: list[str]
    description: str
    # "catalog" groups ship with the label catalog; "directory" groups were added by an operator;
    # "policy": under a coalition policy, every group is the policy's.
    source: str


class OfficeCreate(StrictModel):
    nation: NationCode
    name: ShortText
    host: ShortText = ""


class OfficeRead(ReadModel):
    id: str
    nation: str
    name: str
    host: str

    @classmethod
    def of(cls, office: Office) -> OfficeRead:
        return cls(id=office.id, nation=office.nation_code, name=office.name, host=office.host)


class UserCreate(StrictModel):
    username: Username
    display_name: ShortText = ""
    nationality: NationCode | None = None
    office_id: Annotated[str, Field(max_length=36)] | None = None
    clearance: LabelText | None = Field(
        default=None,
        description='clearance in banner form, e.g. "NATO SECRET" or "NATO SECRET//ATOMAL"',
    )
    roles: Annotated[list[Role], Field(max_length=8, default_factory=lambda: ["officer"])]


class UserUpdate(StrictModel):
    display_name: ShortText | None = None
    office_id: Annotated[str, Field(max_length=36)] | None = None
    roles: Annotated[list[Role], Field(max_length=8)] | None = None
    active: bool | None = None


class ClearanceUpdate(StrictModel):
    clearance: LabelText
    # One new certificate for each active device of the user, signed by the nation's authority
    # with the new clearance: a clearance the nation has not vouched for is never in force.
    certificates: Annotated[list[dict[str, Any]], Field(max_length=64, default_factory=list)]


class UserRead(ReadModel):
    id: str
    username: str
    display_name: str
    nationality: str | None
    office_id: str | None
    clearance: str | None
    clearance_canonical: dict[str, Any] | None
    roles: list[str]
    active: bool

    @classmethod
    def of(cls, user: User, clearance_banner: str | None = None) -> UserRead:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            nationality=user.nationality,
            office_id=user.office_id,
            clearance=clearance_banner,
            clearance_canonical=user.clearance,
            roles=list(user.roles),
            active=user.active,
        )
