"""Dispatch: tenancy's third step (docs/scale.md). Every inspection task names its county
(division code), the county of the plan it was planned from; the tasks planned before are the
default county's, the only one planned then. The county leads the index of a county's tasks by
day.

Revision ID: dispatch_0015_inspection_county
Revises: dispatch_0014_county
"""

from reference.county import county_tenancy
from services.runtime.migrations import add_county_column, drop_county_column
from services.runtime.settings import Settings

revision = "dispatch_0015_inspection_county"
down_revision = "dispatch_0014_county"
INDEX = "ix_inspection_task_county_due"


def upgrade() -> None:
    add_county_column(
        "inspection_task",
        INDEX,
        ["county", "due_on", "township_code"],
        lambda: county_tenancy(Settings().config_dir).default,
    )


def downgrade() -> None:
    drop_county_column("inspection_task", INDEX)
