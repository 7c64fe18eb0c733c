"""Release requests (foreign disclosure) and the grants that carry out approved ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import ID, Base, new_id, utcnow

PENDING = "pending"
APPROVED = "approved"
REFUSED = "refused"
GRANTED = "granted"

MESSAGE = "message"
DOCUMENT_VERSION = "document_version"


class ReleaseRequest(Base):
    __tablename__ = "release_requests"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    item_type: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[str] = mapped_column(String(64), index=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    requested_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    # The nation whose disclosure officers decide: the originator of the item's label.
    originator: Mapped[str] = mapped_column(String(3), index=True)
    label: Mapped[dict[str, Any]]
    label_banner: Mapped[str] = mapped_column(String(512))
    requested_label: Mapped[dict[str, Any]]
    requested_banner: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ItemGrant(Base):
    """An item's key sealed to further devices: those an approved wider label newly admits (a
    release grant), or members who joined later whom its label admits (a history grant)."""

    __tablename__ = "item_grants"

    id: Mapped[str] = mapped_column(ID, primary_key=True)  # the client's grant_id
    # None for a history grant (PROTOCOL.md §16.7): no request, the item's label unchanged.
    request_id: Mapped[str | None] = mapped_column(ForeignKey("release_requests.id"), unique=True)
    item_type: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[str] = mapped_column(String(64), index=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"))
    grantor_device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    label: Mapped[dict[str, Any]]
    label_banner: Mapped[str] = mapped_column(String(512))
    header: Mapped[dict[str, Any]]
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GrantEnvelope(Base):
    __tablename__ = "grant_envelopes"

    grant_id: Mapped[str] = mapped_column(
        ForeignKey("item_grants.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True, index=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
