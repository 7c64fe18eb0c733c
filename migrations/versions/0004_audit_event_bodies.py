"""audit events carry their leaf body and a public uid

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

Each event row now stores its leaf (RFC 8785 JSON) in ``body``, written once when the event is
recorded; the Merkle log hashes that body. Rows recorded before this revision get a body built
from their columns, and, because their leaves change form, the log is rebuilt from scratch by
the integrator: before any release, no signed history exists that this could rewrite.
"""

import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uid", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))

    from protocol.canonical import canonical_json
    from server.audit.leaves import event_leaf

    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, time, action, decision, actor_user_id, actor_device_id, actor_nation, "
            "object_type, object_id, subject_nation, label_banner, label, reasons, details "
            "FROM audit_events"
        )
    ).mappings()
    for row in list(rows):
        uid = str(uuid.uuid4())
        moment = row["time"]
        if isinstance(moment, str):
            from datetime import datetime

            moment = datetime.fromisoformat(moment)
        leaf = event_leaf(
            uid=uid,
            time=moment,
            action=row["action"],
            decision=row["decision"],
            actor={
                "user": row["actor_user_id"],
                "device": row["actor_device_id"],
                "nation": row["actor_nation"],
            },
            object_type=row["object_type"],
            object_id=row["object_id"],
            subject_nation=row["subject_nation"],
            label=_json(row["label"]),  # type: ignore[arg-type]
            label_banner=row["label_banner"],
            reasons=_json(row["reasons"]),  # type: ignore[arg-type]
            details=_json(row["details"]),  # type: ignore[arg-type]
        )
        connection.execute(
            sa.text("UPDATE audit_events SET uid = :uid, body = :body WHERE id = :id"),
            {"uid": uid, "body": canonical_json(leaf).decode("utf-8"), "id": row["id"]},
        )
    connection.execute(sa.text("DELETE FROM audit_checkpoints"))
    connection.execute(sa.text("DELETE FROM audit_nodes"))
    connection.execute(sa.text("DELETE FROM audit_leaves"))
    connection.execute(sa.text("UPDATE audit_events SET leaf_index = NULL"))

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("uid", existing_type=sa.String(length=36), nullable=False)
        batch_op.alter_column("body", existing_type=sa.Text(), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_uid"), ["uid"])


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_uid"), type_="unique")
        batch_op.drop_column("body")
        batch_op.drop_column("uid")
