"""Directory tables: nations, partner groups, offices, users."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import ID, Base, JSONType, new_id, utcnow


class Nation(Base):
    __tablename__ = "nations"

    code: Mapped[str] = mapped_column(String(3), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    # The public half of the nation's enrolment authority key. Its private half never
    # reaches the server: it lives on the nation's security officer's machine.
    authority_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    authority_key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PartnerGroup(Base):
    __tablename__ = "partner_groups"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PartnerGroupMember(Base):
    __tablename__ = "partner_group_members"

    group_name: Mapped[str] = mapped_column(
        ForeignKey("partner_groups.name", ondelete="CASCADE"), primary_key=True
    )
    nation_code: Mapped[str] = mapped_column(String(3), primary_key=True)


class Office(Base):
    __tablename__ = "offices"
    __table_args__ = (UniqueConstraint("nation_code", "name"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    nation_code: Mapped[str] = mapped_column(ForeignKey("nations.code"))
    name: Mapped[str] = mapped_column(String(120))
    host: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    # None only for operators: they run the server and belong to no nation, so no access
    # decision can ever allow them labelled content.
    nationality: Mapped[str | None] = mapped_column(ForeignKey("nations.code"))
    office_id: Mapped[str | None] = mapped_column(ForeignKey("offices.id"))
    # Canonical JSON form of a protocol.labels.Clearance; None means no clearance.
    clearance: Mapped[dict[str, Any] | None]
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
