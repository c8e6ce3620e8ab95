"""Dispatch: admission decisions (准入), proposed by the county supervisor and approved or
rejected by the county government, with the approving body and document number.

Revision ID: dispatch_0007_admission
Revises: dispatch_0006_outbox_positions
"""

import sqlalchemy as sa
from alembic import op

revision = "dispatch_0007_admission"
down_revision = "dispatch_0006_outbox_positions"


def upgrade() -> None:
    op.create_table(
        "admission_decision",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("case_id", sa.Uuid, sa.ForeignKey("cases.id"), nullable=False, index=True),
        sa.Column("matter_code", sa.String, nullable=False),
        sa.Column("township_code", sa.String, nullable=False),
        sa.Column("unit_id", sa.String, nullable=False),
        sa.Column("staff_id", sa.String),
        sa.Column("approving_body", sa.String, nullable=False),
        sa.Column("document_no", sa.String, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("proposed_by", sa.String, nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("decided_by", sa.String),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("opinion", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("admission_decision")
