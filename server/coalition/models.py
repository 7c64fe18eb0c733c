"""Published coalition policy versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, utcnow


class CoalitionPolicyVersion(Base):
    """One published version: the signed policy exactly as verified (its canonical JSON).

    Versions are only ever added, each one verified against the one before it, so the rows
    form the chain from the founding version to the latest.
    """

    __tablename__ = "coalition_policies"

    policy_version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    coalition: Mapped[str] = mapped_column(String(64))
    # b64u of the 32-byte policy digest (PROTOCOL.md §18.2).
    digest: Mapped[str] = mapped_column(String(43), unique=True)
    # RFC 8785 JSON of the signed policy, {"policy": ..., "signatures": [...]}: up to about
    # 1 MiB, served as stored.
    document: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(default=utcnow)


class CoalitionPolicyProposal(Base):
    """A proposed next version and the signatures collected for it so far.

    Every signature stored was verified against the version published when it came in; a
    proposal whose ``policy_version`` no longer follows the latest is stale, kept as history.
    """

    __tablename__ = "coalition_policy_proposals"

    # b64u of the proposed version's policy digest: one proposal per exact document.
    digest: Mapped[str] = mapped_column(String(43), primary_key=True)
    policy_version: Mapped[int] = mapped_column(Integer, index=True)
    # RFC 8785 JSON of the signed policy with every signature collected.
    document: Mapped[str] = mapped_column(Text)
    proposed_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
