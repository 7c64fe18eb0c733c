"""audit refusals: windows of identical refusals, logged once with a count

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 02:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_refusals",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_event_uid", sa.String(length=36), nullable=False),
        sa.Column(
            "event", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_audit_refusals")),
    )
    op.create_index(
        op.f("ix_audit_refusals_window_start"), "audit_refusals", ["window_start"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_refusals_window_start"), table_name="audit_refusals")
    op.drop_table("audit_refusals")
