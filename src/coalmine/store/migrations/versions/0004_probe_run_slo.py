"""The SLO a probe run counts against: ``probe_runs.slo``.

Revision ID: 0004
Revises: 0003
Create Date: 2024-07-15

A flow's ``slo:`` binding is stored with each of its runs, so that the SLO engine counts the
run against that SLO. Runs stored before this revision keep NULL: they count only through an
SLO's ``flows:`` list. Spelled out here (not imported from ``coalmine.probes.store``), like 0002.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("probe_runs", sa.Column("slo", sa.String(253), nullable=True))
    op.create_index("ix_probe_runs_slo_started_at", "probe_runs", ["slo", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_probe_runs_slo_started_at", table_name="probe_runs")
    with op.batch_alter_table("probe_runs") as batch:
        batch.drop_column("slo")
