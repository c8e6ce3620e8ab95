"""Ledger: tenancy's second step (docs/scale.md). Every entry keeps its county in a column,
so that a one-county auditor's trails and proofs are filtered by it; the KPI facts of cases and
inspection tasks keep theirs, so that /v1/kpis counts per county and for the token's counties.

The entry column is read from the bytes the log committed to (the envelope's ``county``),
never supplied anew: entries written before tenancy name none and are the default county's.
Filling it in is the one update past the append-only trigger, in this migration alone; NULL
is an entry naming no county, the default county's, exactly as its bytes say.
No index: every read finds entries by subject or sequence number first, then checks the county.

Revision ID: ledger_0014_county
Revises: ledger_0012_inspections
"""

import sqlalchemy as sa
from alembic import context, op

from reference.county import county_tenancy
from services.runtime.settings import Settings

revision = "ledger_0014_county"
down_revision = "ledger_0012_inspections"


def upgrade() -> None:
    default = (
        context.config.attributes.get("county") or county_tenancy(Settings().config_dir).default
    )
    # NULL: the event named no county (written before tenancy), the default county's.
    op.add_column("ledger_entry", sa.Column("county", sa.String(6), nullable=True))
    op.execute("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only")
    op.execute(
        "UPDATE ledger_entry SET county = convert_from(canonical, 'UTF8')::jsonb ->> 'county' "
        "WHERE convert_from(canonical, 'UTF8')::jsonb ? 'county'"
    )
    op.execute("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only")
    op.add_column("kpi_case", sa.Column("county", sa.String(6), nullable=True))
    op.add_column("kpi_inspection", sa.Column("county", sa.String(6), nullable=True))
    # The cases recorded since tenancy's first step: their entries say their county.
    op.execute(
        sa.text(
            "UPDATE kpi_case SET county = e.county FROM ledger_entry e "
            "WHERE e.subject = kpi_case.case_id::text AND e.county <> :default"
        ).bindparams(default=default)
    )


def downgrade() -> None:
    op.drop_column("kpi_inspection", "county")
    op.drop_column("kpi_case", "county")
    op.drop_column("ledger_entry", "county")
