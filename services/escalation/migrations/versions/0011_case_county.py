"""Escalation: tenancy's first step (docs/scale.md). The county of each case, as its events
say it, so that the deadlines, chases and whistles escalation produces carry the case's county;
a case without a row (its events came before tenancy) is the default county's.

Revision ID: escalation_0011_case_county
Revises: escalation_0010
"""

import sqlalchemy as sa
from alembic import op

revision = "escalation_0011_case_county"
down_revision = "escalation_0010"


def upgrade() -> None:
    op.create_table(
        "case_county",
        sa.Column("case_id", sa.Uuid, primary_key=True),
        sa.Column("county", sa.String(6), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("case_county")
