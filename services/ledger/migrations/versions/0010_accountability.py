"""Ledger: accountability facts (issue #15, items 3 and 1).

Liability both ways: a case's first report — when the tip it was opened for was received — so
the township's discovery latency (发现时效) can be counted; cases recorded before this revision
get it from their tip's facts. Assessment of staff (考核): who resolved each case, who sent each
rejection back, each legal review (法制审核) decided, with whom it returned to, and each
township's assessment opinion of a seconded officer (双重考核), one per officer and period.

Revision ID: ledger_0010_accountability
Revises: ledger_0008_rates
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0010_accountability"
down_revision = "ledger_0008_rates"

ROLE = "whistle_ledger_writer"


def upgrade() -> None:
    op.add_column("kpi_case", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE kpi_case SET reported_at = kpi_tip.received_at "
        "FROM kpi_tip WHERE kpi_case.tip_id = kpi_tip.tip_id"
    )
    op.add_column("kpi_case", sa.Column("resolved_by", sa.String, nullable=True))
    op.add_column("kpi_rejection", sa.Column("staff", sa.String, nullable=True))
    op.create_table(
        "kpi_legal_review",
        sa.Column("review_id", sa.Uuid, primary_key=True),
        sa.Column("case_id", sa.Uuid, nullable=False),
        sa.Column("staff", sa.String, nullable=True),
        sa.Column("township", sa.String, nullable=True),
        sa.Column("unit", sa.String, nullable=True),
        sa.Column("approved", sa.Boolean, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_kpi_legal_review_case_id", "kpi_legal_review", ["case_id"])
    op.create_index("ix_kpi_legal_review_at", "kpi_legal_review", ["at"])
    op.create_table(
        "kpi_assessment",
        sa.Column("staff", sa.String, primary_key=True),
        sa.Column("period", sa.String, primary_key=True),
        sa.Column("assessment_id", sa.Uuid, nullable=False),
        sa.Column("unit", sa.String, nullable=False),
        sa.Column("department", sa.String, nullable=True),
        sa.Column("township", sa.String, nullable=False),
        sa.Column("grade", sa.String, nullable=False),
        sa.Column("opinion", sa.String, nullable=False),
        sa.Column("seal", sa.String, nullable=False),
        sa.Column("assessed_by", sa.String, nullable=False),
        sa.Column("assessed_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The writer role (ledger_0005) needs the new tables as it needs the other KPI facts.
    for table in ("kpi_legal_review", "kpi_assessment"):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {ROLE}")


def downgrade() -> None:
    op.drop_table("kpi_assessment")
    op.drop_table("kpi_legal_review")
    op.drop_column("kpi_rejection", "staff")
    op.drop_column("kpi_case", "resolved_by")
    op.drop_column("kpi_case", "reported_at")
