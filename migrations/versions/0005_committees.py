"""committees, meetings, agenda items, action items

Revision ID: 0005c
Revises: 0004
Create Date: 2026-11-24 22:13:50.427482

Structure and order only: every title, place, agenda item, minutes and action item is an
encrypted message in the committee's channel, referred to here by its id.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005c"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "committees",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("channel_id", sa.String(length=36), nullable=False),
        sa.Column("chair_id", sa.String(length=36), nullable=False),
        sa.Column("secretary_id", sa.String(length=36), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["chair_id"], ["users.id"], name=op.f("fk_committees_chair_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_committees_channel_id_channels")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_committees_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["secretary_id"], ["users.id"], name=op.f("fk_committees_secretary_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_committees")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_committees_channel_id")),
    )
    op.create_table(
        "meetings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("committee_id", sa.String(length=36), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("info_message_id", sa.String(length=64), nullable=False),
        sa.Column("minutes_message_id", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["committee_id"], ["committees.id"], name=op.f("fk_meetings_committee_id_committees")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_meetings_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["info_message_id"],
            ["messages.id"],
            name=op.f("fk_meetings_info_message_id_messages"),
        ),
        sa.ForeignKeyConstraint(
            ["minutes_message_id"],
            ["messages.id"],
            name=op.f("fk_meetings_minutes_message_id_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meetings")),
        sa.UniqueConstraint("info_message_id", name=op.f("uq_meetings_info_message_id")),
        sa.UniqueConstraint("minutes_message_id", name=op.f("uq_meetings_minutes_message_id")),
    )
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_meetings_committee_id"), ["committee_id"], unique=False
        )

    op.create_table(
        "action_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("meeting_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_action_items_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_action_items_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_action_items_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_items")),
        sa.UniqueConstraint("message_id", name=op.f("uq_action_items_message_id")),
    )
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_action_items_meeting_id"), ["meeting_id"], unique=False
        )

    op.create_table(
        "agenda_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("meeting_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_agenda_items_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name=op.f("fk_agenda_items_meeting_id_meetings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_agenda_items_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agenda_items")),
        sa.UniqueConstraint("meeting_id", "position", name=op.f("uq_agenda_items_meeting_id")),
        sa.UniqueConstraint("message_id", name=op.f("uq_agenda_items_message_id")),
    )
    op.create_table(
        "action_item_updates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("action_item_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_item_id"],
            ["action_items.id"],
            name=op.f("fk_action_item_updates_action_item_id_action_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_action_item_updates_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_action_item_updates_message_id_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_item_updates")),
        sa.UniqueConstraint("message_id", name=op.f("uq_action_item_updates_message_id")),
    )
    with op.batch_alter_table("action_item_updates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_action_item_updates_action_item_id"), ["action_item_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("action_item_updates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_action_item_updates_action_item_id"))
    op.drop_table("action_item_updates")
    op.drop_table("agenda_items")
    with op.batch_alter_table("action_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_action_items_meeting_id"))
    op.drop_table("action_items")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meetings_committee_id"))
    op.drop_table("meetings")
    op.drop_table("committees")
