"""Dispatch: near-duplicate tips merged into open cases (case_tip), and each case's point.

Revision ID: dispatch_0004_merging
Revises: dispatch_0003_whistles
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "dispatch_0004_merging"
down_revision = "dispatch_0003_whistles"


def upgrade() -> None:
    op.add_column("cases", sa.Column("lat", sa.Float))
    op.add_column("cases", sa.Column("lon", sa.Float))
    # Merge candidates are looked up by matter among recently opened cases.
    op.create_index("ix_cases_matter_created", "cases", ["matter_code", "created_at"])
    op.create_table(
        "case_tip",
        sa.Column("tip_id", sa.Uuid, primary_key=True),
        sa.Column("case_id", sa.Uuid, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule", sa.String, nullable=False),
        sa.Column("distance_m", sa.Float),
        sa.Column("tip", JSONB, nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True)),
        sa.Column("split_case_id", sa.Uuid),
    )


def downgrade() -> None:
    op.drop_table("case_tip")
    op.drop_index("ix_cases_matter_created", "cases")
    op.drop_column("cases", "lon")
    op.drop_column("cases", "lat")
