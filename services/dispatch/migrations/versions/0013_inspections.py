"""Dispatch: units' inspection tasks (综合查一次, 定岗巡查; issue #15 item 6), one per plan, unit
and day, and on each case the inspection task whose finding opened it.

Revision ID: dispatch_0013_inspections
Revises: dispatch_0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "dispatch_0013_inspections"
down_revision = "dispatch_0012"


def upgrade() -> None:
    op.create_table(
        "inspection_task",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("plan_id", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("township_code", sa.String, nullable=False, index=True),
        sa.Column("unit_id", sa.String, nullable=False),
        sa.Column("grid_ids", postgresql.ARRAY(sa.String), nullable=False, server_default="{}"),
        sa.Column("due_on", sa.Date, nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("completed_by", sa.String),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("findings", postgresql.JSONB),
    )
    op.create_index(
        "uq_inspection_task_plan_unit_day",
        "inspection_task",
        ["plan_id", "unit_id", "due_on"],
        unique=True,
    )
    op.create_index("ix_inspection_task_unit_due", "inspection_task", ["unit_id", "due_on"])
    op.add_column("cases", sa.Column("inspection_task_id", sa.Uuid))


def downgrade() -> None:
    op.drop_column("cases", "inspection_task_id")
    op.drop_table("inspection_task")
