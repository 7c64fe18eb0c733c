"""Documents and their versions. Each version is labelled, sealed to its own audience and
stored as opaque ciphertext (protocol/stream.py) in the blob store, never in the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import ID, Base, utcnow

UPLOADING = "uploading"
COMPLETE = "complete"

Big = BigInteger().with_variant(Integer(), "sqlite")


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[str] = mapped_column(ID, primary_key=True)  # the client's document_id
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), index=True)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DocumentVersion(Base):
    __tablename__ = "document_versions"
    __table_args__ = (UniqueConstraint("document_id", "number"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)  # the client's version_id
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id"), index=True)
    number: Mapped[int]
    audience_id: Mapped[str] = mapped_column(ForeignKey("audiences.id"))
    sender_user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    sender_device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    label: Mapped[dict[str, Any]]
    label_banner: Mapped[str] = mapped_column(String(512))
    header: Mapped[dict[str, Any]]
    size: Mapped[int] = mapped_column(Big)  # plaintext bytes, as signed in the header
    ciphertext_size: Mapped[int] = mapped_column(Big)
    # Bytes of ciphertext stored so far: always whole encrypted chunks until the last.
    received: Mapped[int] = mapped_column(Big, default=0)
    status: Mapped[str] = mapped_column(String(16), default=UPLOADING)
    trailer: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the upload last stored a chunk (or began): an unfinished version idle for longer
    # than the upload expiry is abandoned and removed.
    progressed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    completed_at: Mapped[datetime | None]
