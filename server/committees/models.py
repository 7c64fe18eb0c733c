"""Committees, meetings, agenda items and action items: structure and order only.

Everything with meaning (titles, places, minutes, action items) is an encrypted, labelled
message in the committee's channel; these rows refer to those messages by id. A committee
owns exactly one channel, which gives it its ceiling, label picker, members and audiences.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import ID, Base, new_id, utcnow

MESSAGE_ID = String(64)  # as messages.id


class Committee(Base):
    __tablename__ = "committees"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), unique=True)
    chair_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    secretary_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Meeting(Base):
    __tablename__ = "meetings"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    committee_id: Mapped[str] = mapped_column(ForeignKey("committees.id"), index=True)
    # Plaintext on purpose: scheduling needs it. Title and place are in the info message.
    starts_at: Mapped[datetime]
    info_message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), unique=True)
    minutes_message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id"), unique=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]


class AgendaItem(Base):
    __tablename__ = "agenda_items"
    # Positions are 0..n-1 within a meeting; the constraint catches a concurrent writer.
    __table_args__ = (UniqueConstraint("meeting_id", "position"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), unique=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActionItem(Base):
    __tablename__ = "action_items"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    meeting_id: Mapped[str] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), unique=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActionItemUpdate(Base):
    """A status change: a message replying to the action item's message."""

    __tablename__ = "action_item_updates"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    action_item_id: Mapped[str] = mapped_column(
        ForeignKey("action_items.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), unique=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgendaDocument(Base):
    """A document version attached to an agenda item (the documents carry their own labels)."""

    __tablename__ = "agenda_documents"

    agenda_item_id: Mapped[str] = mapped_column(
        ForeignKey("agenda_items.id", ondelete="CASCADE"), primary_key=True
    )
    version_id: Mapped[str] = mapped_column(ForeignKey("document_versions.id"), primary_key=True)
    attached_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
