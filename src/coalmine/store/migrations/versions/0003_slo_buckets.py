"""SLO buckets: good/total event counts per SLO and bucket start, and collector positions.

Revision ID: 0003
Revises: 0002
Create Date: 2024-07-01

Spelled out here (not imported from ``coalmine.slo.store``) so that this migration keeps
meaning the same thing when the models change later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slo_buckets",
        sa.Column("slo", sa.String(253), nullable=False),
        sa.Column("bucket_start", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("good", sa.Double, nullable=False),
        sa.Column("total", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("slo", "bucket_start", name="pk_slo_buckets"),
    )
    op.create_table(
        "slo_cursors",
        sa.Column("slo", sa.String(253), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("position", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("slo", "source", name="pk_slo_cursors"),
    )


def downgrade() -> None:
    op.drop_table("slo_cursors")
    op.drop_table("slo_buckets")
