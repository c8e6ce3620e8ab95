"""Dispatch: every matter a dispatcher gave a tip by hand (a classification from the triage
queue, a reassignment to another matter), with the tip's words: the labelled examples
``whistle triage train`` learns from (docs/triage.md).

Revision ID: dispatch_0010_triage_labels
Revises: dispatch_0009_legal_review
"""

import sqlalchemy as sa
from alembic import op

revision = "dispatch_0010_triage_labels"
# 0007 and 0008 are other branches' numbers: whichever of them is merged last is this one's
# parent once they meet.
down_revision = "dispatch_0009_legal_review"


def upgrade() -> None:
    op.create_table(
        "triage_label",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tip_id", sa.Uuid, nullable=False, index=True),
        sa.Column("case_id", sa.Uuid, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("matter_code", sa.String, nullable=False),
        sa.Column("suggested", sa.String),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("actor_role", sa.String, nullable=False),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("triage_label")
