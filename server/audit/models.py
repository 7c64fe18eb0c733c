"""Audit events: one append-only row per decision or change.

Rows are written in the same transaction as the action they record. The RFC 9162 Merkle log
over these rows (integrator, checkpoints, proofs) is its own issue; the rows start here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, JSONType, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"

    # BigInteger on PostgreSQL, INTEGER (rowid alias, autoincrement) on SQLite.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    decision: Mapped[str] = mapped_column(String(8), default="allow")
    actor_user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    actor_device_id: Mapped[str | None] = mapped_column(String(36))
    actor_nation: Mapped[str | None] = mapped_column(String(3), index=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(128), index=True)
    subject_nation: Mapped[str | None] = mapped_column(String(3), index=True)
    label_banner: Mapped[str | None] = mapped_column(String(512))
    label: Mapped[dict[str, Any] | None]
    reasons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Old and new values, the expansion of groups used, catalog version: never plaintext or keys.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
