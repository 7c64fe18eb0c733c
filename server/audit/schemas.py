from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from protocol import keys
from server.audit.leaves import parse_body
from server.audit.models import AuditCheckpoint, AuditCosignature, AuditEvent
from server.schemas import ReadModel, StrictModel


class AuditEventRead(ReadModel):
    id: int = Field(description="the database's insertion order (the leaf has the uid)")
    leaf_index: int | None
    event: dict[str, Any] = Field(description="the leaf: exactly what the log commits to")

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventRead:
        return cls(id=event.id, leaf_index=event.leaf_index, event=parse_body(event.body))


class AuditEventsRead(ReadModel):
    events: list[AuditEventRead]
    cursor: int


class LeafRead(ReadModel):
    index: int
    hash: str = Field(description="the leaf hash the server integrated; recompute it from event")
    status: str = Field(description="shown, out-of-scope (nation-scoped auditors) or missing")
    event: int | None = Field(default=None, description="the event's id, shown leaves only")
    data: str | None = Field(
        description="the leaf: the event's RFC 8785 JSON, exactly the bytes hashed (UTF-8)"
    )
    columns: dict[str, Any] | None = Field(
        default=None,
        description=(
            "the event row's index columns as stored (protocol.audit_index.INDEX_COLUMNS), "
            "shown leaves only; a verification checks each against the leaf"
        ),
    )


class LeavesRead(ReadModel):
    checkpoint_size: int
    leaves: list[LeafRead]


class CheckpointRead(ReadModel):
    size: int
    root: str
    note: str
    created_at: datetime

    @classmethod
    def of(cls, checkpoint: AuditCheckpoint, note: str | None = None) -> CheckpointRead:
        return cls(
            size=checkpoint.size,
            root=keys.b64u_encode(checkpoint.root),
            note=checkpoint.note if note is None else note,
            created_at=checkpoint.created_at,
        )


class WitnessViewRead(ReadModel):
    old: int = Field(description="the size asked for: the witness's last cosigned size")
    size: int
    root: str
    note: str = Field(description="the signed checkpoint note, with the cosignatures so far")
    proof: list[str] = Field(description="RFC 9162 consistency proof from old to size")


class CosignatureCreate(StrictModel):
    size: int = Field(ge=0, le=2**63 - 1, description="the size of the checkpoint cosigned")
    vkey: str = Field(max_length=1024, description="the witness key: name+key id+base64")
    cosignature: str = Field(max_length=2048, description="one C2SP cosignature line")


class CosignatureRead(ReadModel):
    size: int
    witness: str
    key_id: str
    timestamp: int
    cosignature: str
    vkey: str

    @classmethod
    def of(cls, row: AuditCosignature) -> CosignatureRead:
        return cls(
            size=row.size,
            witness=row.witness,
            key_id=row.key_id,
            timestamp=row.timestamp,
            cosignature=row.line,
            vkey=row.vkey,
        )


class AuditKeyRead(ReadModel):
    origin: str
    vkey: str


class InclusionRead(ReadModel):
    event_id: int
    index: int
    size: int
    leaf_hash: str
    proof: list[str]


class ConsistencyRead(ReadModel):
    old: int
    new: int
    proof: list[str]
