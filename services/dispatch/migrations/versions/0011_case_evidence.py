"""Dispatch: the evidence uploaded for each case (a step may cite only these), and what a
penalty decision held for legal review records of its step: the officer's certificate number
and the place; and the referrals received with an Idempotency-Key (a retry returns the same
case, another body under the same key is refused).

Revision ID: dispatch_0011_case_evidence
Revises: dispatch_0010_triage_labels
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "dispatch_0011_case_evidence"
down_revision = "dispatch_0010_triage_labels"


def upgrade() -> None:
    op.create_table(
        "case_evidence",
        sa.Column("case_id", sa.Uuid, sa.ForeignKey("cases.id"), primary_key=True),
        sa.Column("sha256", sa.String, primary_key=True),
        sa.Column("content_type", sa.String, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("uploaded_by", sa.String, nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "referral_request",
        sa.Column("referral_id", sa.Uuid, primary_key=True),
        sa.Column("department_code", sa.String, nullable=False),
        sa.Column("idempotency_key", sa.String, nullable=False),
        sa.Column("fingerprint", sa.String, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("legal_review", sa.Column("certificate_number", sa.String))
    op.add_column("legal_review", sa.Column("grid_id", sa.String))
    op.add_column("legal_review", sa.Column("point", JSONB))


def downgrade() -> None:
    op.drop_column("legal_review", "point")
    op.drop_column("legal_review", "grid_id")
    op.drop_column("legal_review", "certificate_number")
    op.drop_table("referral_request")
    op.drop_table("case_evidence")
