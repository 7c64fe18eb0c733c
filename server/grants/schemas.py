from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from server.grants.service import Due, Granted, History, Waiting
from server.schemas import ReadModel, StrictModel


class HistoryGrantCreate(StrictModel):
    grant: Annotated[dict[str, Any], Field(max_length=8)]


class HistoryWindowUpdate(StrictModel):
    days: Annotated[int, Field(ge=0, le=3650)]


class HistoryWindowRead(ReadModel):
    channel_id: str
    history_days: int


class DueRead(ReadModel):
    item_type: str
    item_id: str
    seq: int
    label: str
    label_canonical: dict[str, Any]
    devices: list[str]

    @classmethod
    def of(cls, due: Due) -> DueRead:
        return cls.model_validate(due)


class WaitingRead(ReadModel):
    item_type: str
    item_id: str
    seq: int
    label: str
    sent_at: datetime

    @classmethod
    def of(cls, waiting: Waiting) -> WaitingRead:
        return cls.model_validate(waiting)


class HistoryRead(ReadModel):
    history_days: int
    cursor: int
    more: bool
    due: list[DueRead]
    waiting: list[WaitingRead]

    @classmethod
    def of(cls, found: History) -> HistoryRead:
        return cls(
            history_days=found.history_days,
            cursor=found.cursor,
            more=found.more,
            due=[DueRead.of(d) for d in found.due],
            waiting=[WaitingRead.of(w) for w in found.waiting],
        )


class HistoryGrantRead(ReadModel):
    grant_id: str
    item_type: str
    item_id: str
    channel_id: str
    devices: list[str]
    created: bool

    @classmethod
    def of(cls, granted: Granted) -> HistoryGrantRead:
        g = granted.grant
        return cls(
            grant_id=g.id,
            item_type=g.item_type,
            item_id=g.item_id,
            channel_id=g.channel_id,
            devices=granted.devices,
            created=granted.created,
        )
