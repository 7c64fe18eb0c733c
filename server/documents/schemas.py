from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from protocol import keys
from server.channels.schemas import AudienceRead, GrantRead
from server.documents.models import DocumentVersion
from server.documents.service import Access, Upload
from server.schemas import ReadModel, StrictModel

Json = Annotated[dict[str, Any], Field(max_length=32)]


class VersionCreate(StrictModel):
    header: Json = Field(description="the signed document version header (PROTOCOL.md §15)")


class TrailerSubmit(StrictModel):
    trailer: Json = Field(description="key commitment, content hash and signature")


class VersionRead(ReadModel):
    id: str
    document_id: str
    number: int
    label: str
    status: str
    size: int
    ciphertext_size: int
    received: int
    sender_user_id: str
    sender_device_id: str
    created_at: datetime
    completed_at: datetime | None
    header: dict[str, Any]
    trailer: dict[str, Any] | None

    @classmethod
    def of(cls, version: DocumentVersion) -> VersionRead:
        return cls(
            id=version.id,
            document_id=version.document_id,
            number=version.number,
            label=version.label_banner,
            status=version.status,
            size=version.size,
            ciphertext_size=version.ciphertext_size,
            received=version.received,
            sender_user_id=version.sender_user_id,
            sender_device_id=version.sender_device_id,
            created_at=version.created_at,
            completed_at=version.completed_at,
            header=version.header,
            trailer=version.trailer,
        )


class UploadRead(VersionRead):
    audience: AudienceRead = Field(
        description="the version's audience with the uploader's own envelope, to resume with"
    )

    @classmethod
    def of_upload(cls, upload: Upload) -> UploadRead:
        return cls(
            **{**VersionRead.of(upload.version).model_dump(), "received": upload.received},
            audience=AudienceRead(
                header=upload.audience.header,
                signature=keys.b64u_encode(upload.audience.signature),
                envelope=keys.b64u_encode(upload.envelope) if upload.envelope else None,
            ),
        )


class VersionAccessRead(ReadModel):
    channel_id: str
    label: str = Field(description="the version's label now (its last released label version)")
    version: VersionRead
    audience: AudienceRead
    sender_certificate: dict[str, Any] | None
    grant: GrantRead | None = None

    @classmethod
    def of(cls, access: Access) -> VersionAccessRead:
        return cls(
            channel_id=access.channel.id,
            label=access.banner,
            version=VersionRead.of(access.version),
            audience=AudienceRead(
                header=access.audience.header,
                signature=keys.b64u_encode(access.audience.signature),
                envelope=keys.b64u_encode(access.envelope) if access.envelope else None,
            ),
            sender_certificate=access.sender_certificate,
            grant=(
                GrantRead(
                    header=access.grant.header,
                    signature=keys.b64u_encode(access.grant.signature),
                    envelope=keys.b64u_encode(access.grant_envelope or b""),
                    grantor_certificate=access.grantor_certificate,
                )
                if access.grant is not None
                else None
            ),
        )
