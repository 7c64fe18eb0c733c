"""upload progress: when an unfinished document version last made progress

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("document_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progressed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE document_versions SET progressed_at = created_at")
    with op.batch_alter_table("document_versions", schema=None) as batch_op:
        batch_op.alter_column(
            "progressed_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            batch_op.f("ix_document_versions_progressed_at"), ["progressed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("document_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_versions_progressed_at"))
        batch_op.drop_column("progressed_at")
