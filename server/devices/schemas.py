from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from protocol import keys
from server.devices.models import Device
from server.directory.models import User
from server.schemas import B64u, Identifier, ReadModel, ShortText, StrictModel, Username


class EnrolmentCodeRead(ReadModel):
    user_id: str
    username: str
    code: str = Field(description="shown once; give it to the user out of band")
    expires_at: datetime


class DeviceEnrol(StrictModel):
    username: Username
    code: ShortText
    name: Identifier
    signing_key: B64u
    encryption_key: B64u
    proof: B64u = Field(description="the device's signature over its registration")


class CertificateSubmit(StrictModel):
    certificate: dict[str, Any]


class DeviceRevoke(StrictModel):
    reason: ShortText = ""


class DeviceRead(ReadModel):
    id: str
    user_id: str
    username: str
    nationality: str | None
    # The user's clearance in the directory, canonical form: what a certificate must vouch for.
    user_clearance: dict[str, Any] | None
    name: str
    status: str
    signing_key: str
    encryption_key: str
    fingerprint: str
    certificate: dict[str, Any] | None
    created_at: datetime
    activated_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, device: Device, user: User) -> DeviceRead:
        return cls(
            id=device.id,
            user_id=user.id,
            username=user.username,
            nationality=user.nationality,
            user_clearance=user.clearance,
            name=device.name,
            status=device.status,
            signing_key=keys.b64u_encode(device.signing_key),
            encryption_key=keys.b64u_encode(device.encryption_key),
            fingerprint=keys.fingerprint(device.signing_key + device.encryption_key),
            certificate=device.certificate,
            created_at=device.created_at,
            activated_at=device.activated_at,
            revoked_at=device.revoked_at,
        )


class TransparencyCheckpoint(ReadModel):
    size: int
    root: str
    note: str = Field(description="the signed checkpoint note, with witnesses' cosignatures")
    old: int = Field(description="the size asked to be proven consistent with (0: none)")
    consistency: list[str] = Field(description="RFC 9162 consistency proof from old to size")


class TransparencyLeaf(ReadModel):
    index: int
    leaf: str = Field(description="the audit leaf, exactly the bytes hashed (UTF-8)")
    proof: list[str] = Field(description="RFC 9162 inclusion proof in the checkpoint's tree")


class TransparencyEntry(ReadModel):
    index: int
    size: int = Field(description="the key directory's size")
    data: str = Field(description="the entry's RFC 8785 JSON, exactly the bytes hashed")
    proof: list[str] = Field(description="RFC 9162 inclusion proof in the key directory")


class TransparencyRead(ReadModel):
    """A device's current status, proven at a signed checkpoint (PROTOCOL.md §19.3)."""

    device_id: str
    checkpoint: TransparencyCheckpoint
    directory: TransparencyLeaf
    entry: TransparencyEntry
    registration: TransparencyLeaf
