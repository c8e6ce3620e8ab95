"""Escalation: extensions (延期) of a running clock, and who holds each case.

Revision ID: escalation_0006
Revises: escalation_0005

- ``case_assignment``: the unit and township a case is assigned to (from ``CaseAssigned``),
  so that escalation knows who may ask for more time and who may grant it.
- ``deadline_extension``: each request and its decision; at most one pending per clock.
- ``escalation_step.generation``: an approved extension gives the clock a new due time and a
  new ladder; its steps belong to the next generation, so ``(deadline_id, generation, step)``
  is what exists once (the earlier generation's fired steps stay, as history).

Cases assigned before this migration have no ``case_assignment`` row until they are assigned
again: nobody can ask for their extension through the API.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "escalation_0006"
down_revision = "escalation_0005"


def upgrade() -> None:
    op.create_table(
        "case_assignment",
        sa.Column("case_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("unit_id", sa.String, nullable=False),
        sa.Column("township_code", sa.String),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deadline_extension",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("deadline_id", sa.BigInteger, sa.ForeignKey("deadline.id"), nullable=False),
        sa.Column("case_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extra_working_days", sa.Integer),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("requested_by", sa.String, nullable=False),
        sa.Column("requested_by_role", sa.String, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String),
        sa.Column("decided_by_role", sa.String),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("note", sa.String),
    )
    op.create_index(
        "ux_deadline_extension_pending",
        "deadline_extension",
        ["deadline_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.add_column(
        "escalation_step",
        sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
    )
    op.drop_constraint("escalation_step_deadline_id_step_key", "escalation_step", type_="unique")
    op.create_unique_constraint(
        "escalation_step_deadline_id_generation_step_key",
        "escalation_step",
        ["deadline_id", "generation", "step"],
    )


def downgrade() -> None:
    op.drop_constraint(
        "escalation_step_deadline_id_generation_step_key", "escalation_step", type_="unique"
    )
    op.create_unique_constraint(
        "escalation_step_deadline_id_step_key", "escalation_step", ["deadline_id", "step"]
    )
    op.drop_column("escalation_step", "generation")
    op.drop_index("ux_deadline_extension_pending", "deadline_extension")
    op.drop_table("deadline_extension")
    op.drop_table("case_assignment")
