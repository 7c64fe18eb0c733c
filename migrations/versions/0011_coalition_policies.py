"""coalition policy: published versions

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 11:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coalition_policies",
        sa.Column("policy_version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("coalition", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=43), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("policy_version", name=op.f("pk_coalition_policies")),
        sa.UniqueConstraint("digest", name=op.f("uq_coalition_policies_digest")),
    )


def downgrade() -> None:
    op.drop_table("coalition_policies")
