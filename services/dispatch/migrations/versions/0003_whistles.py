"""Dispatch: whistles (吹哨), the supporting units of joint operations (联合执法) and the count
of reopenings that "repeated complaint" whistles look at.

Revision ID: dispatch_0003_whistles
Revises: dispatch_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "dispatch_0003_whistles"
down_revision = "dispatch_0002"


def upgrade() -> None:
    op.add_column("cases", sa.Column("reopens", sa.Integer, nullable=False, server_default="0"))
    op.alter_column("cases", "reopens", server_default=None)
    op.add_column(
        "cases",
        sa.Column("supporting_units", ARRAY(sa.String), nullable=False, server_default="{}"),
    )
    op.create_index(
        "ix_cases_supporting_units", "cases", ["supporting_units"], postgresql_using="gin"
    )
    op.create_table(
        "whistles",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("case_id", sa.Uuid, nullable=False, index=True),
        sa.Column("township_code", sa.String, index=True),
        sa.Column("departments", ARRAY(sa.String), nullable=False),
        sa.Column("reason_code", sa.String, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("rule", sa.String, nullable=False),
        sa.Column("automatic", sa.Boolean, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("actor_role", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("whistles")
    op.drop_index("ix_cases_supporting_units", table_name="cases")
    op.drop_column("cases", "supporting_units")
    op.drop_column("cases", "reopens")
