from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from server.releases.models import ReleaseRequest
from server.schemas import ReadModel, StrictModel

Name = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_-]{1,31}$")]
Reason = Annotated[str, StringConstraints(max_length=2000)]


class ReleaseCreate(StrictModel):
    item_type: Literal["message", "document_version"]
    item_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    add: Annotated[list[Name], Field(min_length=1, max_length=50)]
    reason: Reason = ""


class DecisionCreate(StrictModel):
    reason: Reason = ""


class GrantCreate(StrictModel):
    grant: Annotated[dict[str, Any], Field(max_length=8)]


class ReleaseRead(ReadModel):
    id: str
    item_type: str
    item_id: str
    channel_id: str
    requested_by: str
    originator: str
    label: str
    label_canonical: dict[str, Any]
    requested_label: str
    requested_label_canonical: dict[str, Any]
    reason: str
    status: str
    decided_by: str | None
    decision_reason: str
    decided_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, r: ReleaseRequest) -> ReleaseRead:
        return cls(
            id=r.id,
            item_type=r.item_type,
            item_id=r.item_id,
            channel_id=r.channel_id,
            requested_by=r.requested_by,
            originator=r.originator,
            label=r.label_banner,
            label_canonical=r.label,
            requested_label=r.requested_banner,
            requested_label_canonical=r.requested_label,
            reason=r.reason,
            status=r.status,
            decided_by=r.decided_by,
            decision_reason=r.decision_reason,
            decided_at=r.decided_at,
            created_at=r.created_at,
        )
