"""history grants: a channel's history window; a grant without a release request

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 08:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("history_days", sa.Integer(), nullable=False, server_default="90")
        )
    with op.batch_alter_table("item_grants", schema=None) as batch_op:
        batch_op.alter_column("request_id", existing_type=sa.String(length=36), nullable=True)


def downgrade() -> None:
    op.execute(
        "DELETE FROM grant_envelopes WHERE grant_id IN "
        "(SELECT id FROM item_grants WHERE request_id IS NULL)"
    )
    op.execute("DELETE FROM item_grants WHERE request_id IS NULL")
    with op.batch_alter_table("item_grants", schema=None) as batch_op:
        batch_op.alter_column("request_id", existing_type=sa.String(length=36), nullable=False)
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("history_days")
