"""Channels, members, audiences (with each device's envelope), messages and deliveries.

The server stores ciphertext, envelopes and signatures as opaque bytes; it reads only the
cleartext headers it must check (container, sender, audience, label).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import ID, Base, JSONType, new_id, utcnow


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # The ceiling: every message's label must be dominated by it, and every member cleared for it.
    ceiling: Mapped[dict[str, Any]]
    ceiling_banner: Mapped[str] = mapped_column(String(512))
    # The label picker: banners offered to members, and the default when a sender names none.
    labels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    default_label: Mapped[str] = mapped_column(String(512))
    # How far back a member who joins later is given past items by a history grant.
    history_days: Mapped[int] = mapped_column(Integer, default=90, server_default="90")
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChannelMember(Base):
    __tablename__ = "channel_members"

    channel_id: Mapped[str] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    added_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class Audience(Base):
    __tablename__ = "audiences"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), index=True)
    creator_device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    header: Mapped[dict[str, Any]]
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AudienceEnvelope(Base):
    __tablename__ = "audience_envelopes"

    audience_id: Mapped[str] = mapped_column(
        ForeignKey("audiences.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True, index=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)


class Message(Base):
    __tablename__ = "messages"

    # The delivery order and the sync cursor: strictly increasing, server-assigned.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(64), unique=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), index=True)
    audience_id: Mapped[str] = mapped_column(ForeignKey("audiences.id"))
    sender_user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    sender_device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    label: Mapped[dict[str, Any]]
    label_banner: Mapped[str] = mapped_column(String(512))
    header: Mapped[dict[str, Any]]
    body: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """What each device was given or refused, once per message: the record that a later
    spillage investigation reads to compute exposure."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("message_seq", "device_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    message_seq: Mapped[int] = mapped_column(ForeignKey("messages.seq", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | withheld
    at: Mapped[datetime] = mapped_column(default=utcnow)
