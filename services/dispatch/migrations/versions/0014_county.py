"""Dispatch: tenancy's first step (docs/scale.md). Every case names its county (division
code); the cases stored before belong to the default county, the one whose files lie directly
in the configuration directory. The county leads the index of a county's lists and queues.

Revision ID: dispatch_0014_county
Revises: dispatch_0013_inspections
"""

from reference.county import county_tenancy
from services.runtime.migrations import add_county_column, drop_county_column
from services.runtime.settings import Settings

revision = "dispatch_0014_county"
down_revision = "dispatch_0013_inspections"
INDEX = "ix_cases_county_status"


def upgrade() -> None:
    add_county_column(
        "cases",
        INDEX,
        ["county", "status", "township_code"],
        lambda: county_tenancy(Settings().config_dir).default,
    )


def downgrade() -> None:
    drop_county_column("cases", INDEX)
