"""Devices and the one-time codes that enrol them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import ID, Base, new_id, utcnow

DEVICE_PENDING = "pending"
DEVICE_ACTIVE = "active"
DEVICE_REVOKED = "revoked"


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    signing_key: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    encryption_key: Mapped[bytes] = mapped_column(LargeBinary(1216))
    status: Mapped[str] = mapped_column(String(16), default=DEVICE_PENDING)
    # The certificate as the nation's authority signed it ({"body": ..., "signature": ...}).
    certificate: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class EnrolmentCode(Base):
    __tablename__ = "enrolment_codes"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    # SHA-256 of the code: the code itself is shown once to whoever issued it.
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    issued_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"))
