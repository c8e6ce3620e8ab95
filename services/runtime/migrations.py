"""Alembic, one migration history per service, run programmatically.

Each service keeps its history in ``services/<service>/migrations``; its ``env.py`` only calls
:func:`run_env`. The tables every service shares (outbox, inbox) are created by
:func:`create_runtime_tables` inside each service's first migration.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


def alembic_config(service: str) -> Config:
    config = Config()
    config.set_main_option("script_location", f"services.{service}:migrations")
    return config


async def upgrade(
    service: str, database_url: str, revision: str = "heads", *, county: str | None = None
) -> None:
    """Run ``service``'s migrations up to ``revision``; ``county`` is the deployment's default
    county, which rows stored before tenancy are given (:func:`default_county`)."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, service, revision, county)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, service: str, revision: str, county: str | None) -> None:
    config = alembic_config(service)
    config.attributes["connection"] = connection
    config.attributes["county"] = county
    command.upgrade(config, revision)


def add_county_column(
    table: str, index: str, columns: list[str], configured: Callable[[], str]
) -> None:
    """Tenancy (docs/scale.md): a ``county`` column on ``table``, leading the new ``index``
    over ``columns``. Rows stored before are the default county's: the one the launcher passed
    to :func:`upgrade`, else ``configured()`` (read from the configuration directory)."""
    default = context.config.attributes.get("county") or configured()
    op.add_column(table, sa.Column("county", sa.String(6), nullable=False, server_default=default))
    op.alter_column(table, "county", server_default=None)
    op.create_index(index, table, columns)


def drop_county_column(table: str, index: str) -> None:
    op.drop_index(index, table_name=table)
    op.drop_column(table, "county")


def run_env() -> None:
    """The body of every service's ``env.py``."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `whistle migrate` (they need a live connection)")
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def create_runtime_tables() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.String, nullable=False, unique=True),
        sa.Column("topic", sa.String, nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("event", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["id"], postgresql_where=sa.text("sent_at IS NULL")
    )
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"])
    op.create_table(
        "inbox",
        sa.Column("source", sa.String, primary_key=True),
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("topic", sa.String, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    )


def add_outbox_positions() -> None:
    """Where the broker put each published event, and how far each partition had got: what the
    relay compares with the broker's logs to notice that the broker lost events
    (services/runtime/outbox.py)."""
    op.add_column("outbox", sa.Column("kafka_partition", sa.Integer))
    op.add_column("outbox", sa.Column("kafka_offset", sa.BigInteger))
    op.create_index(
        "ix_outbox_position",
        "outbox",
        ["topic", "kafka_partition", "kafka_offset"],
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
    op.create_table(
        "outbox_partition",
        sa.Column("topic", sa.String, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
    )


def drop_outbox_positions() -> None:
    op.drop_table("outbox_partition")
    op.drop_index("ix_outbox_position", "outbox")
    op.drop_column("outbox", "kafka_offset")
    op.drop_column("outbox", "kafka_partition")
