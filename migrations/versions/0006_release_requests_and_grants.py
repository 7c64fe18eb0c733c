"""release requests and grants

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 22:32:34.267106
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "release_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("item_type", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=36), nullable=False),
        sa.Column("requested_by", sa.String(length=36), nullable=False),
        sa.Column("originator", sa.String(length=3), nullable=False),
        sa.Column(
            "label", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("label_banner", sa.String(length=512), nullable=False),
        sa.Column(
            "requested_label",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("requested_banner", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=36), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_release_requests_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_release_requests_decided_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["users.id"], name=op.f("fk_release_requests_requested_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_requests")),
    )
    with op.batch_alter_table("release_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_requests_item_id"), ["item_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_release_requests_originator"), ["originator"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_release_requests_status"), ["status"], unique=False)

    op.create_table(
        "item_grants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("item_type", sa.String(length=32), nullable=False),
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=36), nullable=False),
        sa.Column("grantor_device_id", sa.String(length=36), nullable=False),
        sa.Column(
            "label", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("label_banner", sa.String(length=512), nullable=False),
        sa.Column(
            "header", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_item_grants_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["grantor_device_id"],
            ["devices.id"],
            name=op.f("fk_item_grants_grantor_device_id_devices"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["release_requests.id"],
            name=op.f("fk_item_grants_request_id_release_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_grants")),
        sa.UniqueConstraint("request_id", name=op.f("uq_item_grants_request_id")),
    )
    with op.batch_alter_table("item_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_grants_item_id"), ["item_id"], unique=False)

    op.create_table(
        "grant_envelopes",
        sa.Column("grant_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_grant_envelopes_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["item_grants.id"],
            name=op.f("fk_grant_envelopes_grant_id_item_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("grant_id", "device_id", name=op.f("pk_grant_envelopes")),
    )
    with op.batch_alter_table("grant_envelopes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_grant_envelopes_device_id"), ["device_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("grant_envelopes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grant_envelopes_device_id"))

    op.drop_table("grant_envelopes")
    with op.batch_alter_table("item_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_grants_item_id"))

    op.drop_table("item_grants")
    with op.batch_alter_table("release_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_requests_status"))
        batch_op.drop_index(batch_op.f("ix_release_requests_originator"))
        batch_op.drop_index(batch_op.f("ix_release_requests_item_id"))

    op.drop_table("release_requests")
