"""Audit events, and the RFC 9162 Merkle log over them.

Event rows are written in the same transaction as the action they record. The integrator
(``server/audit/integrator.py``) later appends them to the log in batches: it gives each a leaf
index, stores the perfect subtree hashes, and signs a checkpoint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, JSONType, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"

    # BigInteger on PostgreSQL, INTEGER (rowid alias, autoincrement) on SQLite.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    # Public identity of the event, in its leaf (the id is the database's insertion order).
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # The leaf: RFC 8785 JSON of the whole event, written once (server/audit/leaves.py). The
    # columns around it index it for queries.
    body: Mapped[str] = mapped_column(Text)
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
    # Set by the integrator when the event enters the Merkle log (audit_leaves is the record);
    # indexed so that finding the events still to integrate does not scan the log.
    leaf_index: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), index=True
    )


class AuditLeaf(Base):
    """An event's place in the Merkle log: its index and the leaf hash integrated there."""

    __tablename__ = "audit_leaves"

    index: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), unique=True
    )
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditNode(Base):
    """The hash of a perfect subtree: leaves [index * 2**level, (index + 1) * 2**level)."""

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note), one per integration batch."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditRefusal(Base):
    """A window of identical refusals (same actor, action, object and reasons).

    The first refusal of a window is logged at once, as an event with count 1; the rest are only
    counted here, and logged as one event with their count when the window closes. So a flood of
    refused requests adds at most two events per window to the log, however long it lasts.
    """

    __tablename__ = "audit_refusals"

    # SHA-256 (hex) of the canonical JSON of what makes refusals identical.
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(index=True)
    last_at: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer)
    # The uid of the event that logged the window's first refusal.
    first_event_uid: Mapped[str] = mapped_column(String(36))
    # What the closing event repeats: actor, object, reasons, subject nation, label.
    event: Mapped[dict[str, Any]]


class AuditCosignature(Base):
    """A witness's cosignature (C2SP tlog-cosignature v1) of the checkpoint of ``size``,
    served as an extra signature line of that checkpoint's note. One per witness key and
    checkpoint: the first that verifies is kept."""

    __tablename__ = "audit_cosignatures"

    size: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    witness: Mapped[str] = mapped_column(String(256), primary_key=True)
    # Hex of the 4-byte key id: SHA-256(name || 0x0A || 0x04 || public key)[:4].
    key_id: Mapped[str] = mapped_column(String(8), primary_key=True)
    timestamp: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    # The signature line, with its final newline, exactly as appended to the note.
    line: Mapped[str] = mapped_column(Text)
    vkey: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KeyDirectoryEntry(Base):
    """A device's entry in the key directory as of the latest ``keys.directory`` leaf
    (protocol/transparency.py): written only by the integrator, in the transaction that
    writes that leaf, so the table is always the directory the latest checkpoint ends with."""

    __tablename__ = "key_directory"

    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # The entry's RFC 8785 JSON (PROTOCOL.md §19.1), and its RFC 9162 leaf hash.
    body: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
