"""Intake: tenancy's first step (docs/scale.md). Every tip names its county (division code);
the tips stored before belong to the default county, the one whose files lie directly in the
configuration directory. The county leads the index a county's tips are read by.

Revision ID: intake_0016_county
Revises: intake_0013_follow_up
"""

from reference.county import county_tenancy
from services.runtime.migrations import add_county_column, drop_county_column
from services.runtime.settings import Settings

revision = "intake_0016_county"
down_revision = "intake_0013_follow_up"
INDEX = "ix_tip_county_received_at"


def upgrade() -> None:
    add_county_column(
        "tip",
        INDEX,
        ["county", "received_at"],
        lambda: county_tenancy(Settings().config_dir).default,
    )


def downgrade() -> None:
    drop_county_column("tip", INDEX)
