"""key transparency: the key directory of the latest keys.directory leaf

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26 19:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Empty at first: the integrator's next run rebuilds it from the key events in the log.
    op.create_table(
        "key_directory",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_key_directory")),
    )


def downgrade() -> None:
    op.drop_table("key_directory")
