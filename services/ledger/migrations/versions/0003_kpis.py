"""Ledger: KPI facts (kpi_case, kpi_tip, kpi_rejection), projected from the recorded events.

Revision ID: ledger_0003
Revises: ledger_0002

Entries recorded before this revision are not projected: the KPIs start with the events
recorded after it (a replay from ``ledger_entry`` would backfill them; not written yet).
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0003"
down_revision = "ledger_0002"


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "kpi_case",
        sa.Column("case_id", sa.Uuid, primary_key=True),
        sa.Column("tip_id", sa.Uuid, index=True),
        sa.Column("township", sa.String),
        sa.Column("unit", sa.String),
        sa.Column("matter", sa.String),
        sa.Column("channel", sa.String),
        sa.Column("tip_on_spot", sa.Boolean),
        _at("opened_at"),
        _at("first_response_due_at"),
        _at("first_response_stopped_at"),
        sa.Column("first_response_met", sa.Boolean),
        sa.Column("first_response_late_seconds", sa.Integer),
        sa.Column("resolution_round", sa.Integer),
        _at("resolution_due_at"),
        sa.Column("resolution_stop_round", sa.Integer),
        _at("resolution_stopped_at"),
        sa.Column("resolution_met", sa.Boolean),
        sa.Column("resolution_late_seconds", sa.Integer),
        _at("resolved_at"),
        sa.Column("resolution", sa.String),
        _at("closed_at"),
        _at("reopened_at"),
        sa.Column("reopened", sa.Integer, nullable=False),
        sa.Column("rejections", sa.Integer, nullable=False),
        _at("last_rejected_at"),
        sa.Column("last_rejection_reason", sa.String),
    )
    op.create_table(
        "kpi_tip",
        sa.Column("tip_id", sa.Uuid, primary_key=True),
        sa.Column("channel", sa.String, nullable=False),
        sa.Column("resolved_on_spot", sa.Boolean, nullable=False),
        _at("received_at", nullable=False),
    )
    op.create_table(
        "kpi_rejection",
        sa.Column("case_id", sa.Uuid, primary_key=True),
        sa.Column("ordinal", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("township", sa.String),
        sa.Column("unit", sa.String),
        _at("at", nullable=False),
    )
    op.create_index("ix_kpi_rejection_at", "kpi_rejection", ["at"])


def downgrade() -> None:
    for table in ("kpi_rejection", "kpi_tip", "kpi_case"):
        op.drop_table(table)
