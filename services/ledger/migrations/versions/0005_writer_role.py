"""Ledger: the role the ledger service works as, which may append but never change the record.

Revision ID: ledger_0005
Revises: ledger_0004

The triggers refuse UPDATE, DELETE and TRUNCATE, but a table's owner may disable triggers. The
service therefore works as ``whistle_ledger_writer`` (``SET ROLE`` at connection start, see
``services.ledger.app``), which owns nothing and is granted only what recording, proving and
the KPIs need: INSERT and SELECT on the record, UPDATE only on the log's size and the KPI facts.
A table added by a later revision must be granted here-like in that revision.
"""

from alembic import op

revision = "ledger_0005"
down_revision = "ledger_0004"

ROLE = "whistle_ledger_writer"
APPEND_ONLY = ("ledger_entry", "ledger_node", "tree_head")
MUTABLE = (
    "ledger_case_tip",
    "kpi_case",
    "kpi_tip",
    "kpi_rejection",
    "kpi_rating",
    "kpi_whistle",
    "kpi_ladder",
    "outbox",
    "inbox",
)


def upgrade() -> None:
    # Roles belong to the server, not to one database: another database may have made it.
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
                CREATE ROLE {ROLE} NOLOGIN;
            END IF;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY)} TO {ROLE}")
    op.execute(f"GRANT SELECT, UPDATE ON ledger_state TO {ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(MUTABLE)} TO {ROLE}")
    op.execute(f"GRANT SELECT ON alembic_version TO {ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {ROLE}")
