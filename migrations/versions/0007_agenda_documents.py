"""agenda documents

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 22:39:03.677032
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agenda_documents",
        sa.Column("agenda_item_id", sa.String(length=36), nullable=False),
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("attached_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agenda_item_id"],
            ["agenda_items.id"],
            name=op.f("fk_agenda_documents_agenda_item_id_agenda_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["attached_by"], ["users.id"], name=op.f("fk_agenda_documents_attached_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["document_versions.id"],
            name=op.f("fk_agenda_documents_version_id_document_versions"),
        ),
        sa.PrimaryKeyConstraint("agenda_item_id", "version_id", name=op.f("pk_agenda_documents")),
    )


def downgrade() -> None:
    op.drop_table("agenda_documents")
