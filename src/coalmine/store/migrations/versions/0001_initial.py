"""Initial schema: rollouts, decisions, receipts, commands, controller heartbeat.

Revision ID: 0001
Revises:
Create Date: 2024-06-01

The tables are spelled out here (not imported from ``coalmine.store.sql``) so that this
migration keeps meaning the same thing when the models change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _rollout_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["rollout", "revision"],
        ["rollouts.name", "rollouts.revision"],
        name=f"fk_{table}_rollout_revision_rollouts",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("revision", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("state", _json, nullable=False),
        sa.Column("spec", _json, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("name", "revision", name="pk_rollouts"),
    )
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("rollout", sa.String(253), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("step", sa.Integer, nullable=True),
        sa.Column("data", _json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
        _rollout_fk("decisions"),
    )
    op.create_index("ix_decisions_rollout_revision_id", "decisions", ["rollout", "revision", "id"])
    op.create_table(
        "receipts",
        sa.Column("receipt_id", sa.String(64), nullable=False),
        sa.Column("rollout", sa.String(253), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("timestamp", sa.Double, nullable=False),
        sa.Column("body", _json, nullable=False),
        sa.PrimaryKeyConstraint("receipt_id", name="pk_receipts"),
        _rollout_fk("receipts"),
    )
    op.create_index("ix_receipts_rollout_timestamp", "receipts", ["rollout", "timestamp"])
    op.create_index("ix_receipts_timestamp", "receipts", ["timestamp"])
    op.create_table(
        "commands",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("rollout", sa.String(253), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("args", _json, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("consumed_at", sa.Double, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_commands"),
    )
    op.create_index(
        "ix_commands_rollout_consumed_at_id", "commands", ["rollout", "consumed_at", "id"]
    )
    op.create_table(
        "controller_heartbeat",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("controller_id", sa.String(255), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_controller_heartbeat"),
    )


def downgrade() -> None:
    for table in ("controller_heartbeat", "commands", "receipts", "decisions", "rollouts"):
        op.drop_table(table)
