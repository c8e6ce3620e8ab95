"""Dispatch: in whose name each case is handled (cases.acting: the township or the entrusting
department, the legal basis, the documents used), and legal reviews (法制审核) of penalty
decisions on the county's 重大执法决定 list, at most one pending per case.

Revision ID: dispatch_0009_legal_review
Revises: dispatch_0008_follow_up
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "dispatch_0009_legal_review"
down_revision = "dispatch_0008_follow_up"


def upgrade() -> None:
    op.add_column("cases", sa.Column("acting", JSONB))
    op.create_table(
        "legal_review",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("case_id", sa.Uuid, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("penalty", JSONB, nullable=False),
        sa.Column("evidence", ARRAY(sa.String), nullable=False, server_default="{}"),
        sa.Column("major_decisions", ARRAY(sa.String), nullable=False),
        sa.Column("requested_by", sa.String, nullable=False),
        sa.Column("requested_role", sa.String, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("reviewed_by", sa.String),
        sa.Column("reviewed_at", sa.DateTime(timezone=True)),
        sa.Column("opinion", sa.Text),
    )
    op.create_index(
        "uq_legal_review_pending",
        "legal_review",
        ["case_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("legal_review")
    op.drop_column("cases", "acting")
