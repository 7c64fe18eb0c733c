"""coalition policy: proposals and the signatures collected for them

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coalition_policy_proposals",
        sa.Column("digest", sa.String(length=43), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_coalition_policy_proposals")),
    )
    op.create_index(
        op.f("ix_coalition_policy_proposals_policy_version"),
        "coalition_policy_proposals",
        ["policy_version"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_coalition_policy_proposals_policy_version"),
        table_name="coalition_policy_proposals",
    )
    op.drop_table("coalition_policy_proposals")
