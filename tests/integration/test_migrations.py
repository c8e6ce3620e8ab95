"""Each service's migrations build exactly the schema its models declare, on a fresh database."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

from contracts.envelope import new_event
from contracts.events import CaseTriageRequired
from services.ledger.handlers import Recorder
from services.runtime.db import create_engine, ensure_database, session_factory
from services.runtime.migrations import upgrade
from services.runtime.settings import SERVICES
from tests.support.infra import Infra


def _declared_metadata(service: str) -> MetaData:
    """The tables of the service's own models and of the runtime (outbox, inbox)."""
    importlib.import_module(f"services.{service}.models")
    owners = (f"services.{service}.", "services.runtime.")
    metadata = MetaData()
    for mapper in SQLModel._sa_registry.mappers:  # type: ignore[attr-defined]
        if mapper.class_.__module__.startswith(owners):
            mapper.local_table.to_metadata(metadata)
    return metadata


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_the_models(infra: Infra, service: str) -> None:
    url = infra.fresh_database_url(service)
    await ensure_database(url)
    await upgrade(service, url)
    await upgrade(service, url)  # running them again is a no-op, as every start does
    declared = _declared_metadata(service)
    assert len(declared.tables) >= 3
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), declared)
            )
    finally:
        await engine.dispose()
    assert diffs == [], f"{service}: models and migrations differ; add a migration"


async def test_ledger_entries_cannot_be_changed_or_removed(infra: Infra) -> None:
    url = infra.fresh_database_url("ledger")
    await ensure_database(url)
    await upgrade("ledger", url)
    engine = create_engine(url, pool_size=1)
    sessions = session_factory(engine)
    now = datetime(2026, 11, 21, 8, tzinfo=UTC)
    try:
        record = Recorder(lambda: now)
        async with sessions() as session, session.begin():
            for _ in range(2):
                payload = CaseTriageRequired(
                    case_id=uuid4(),
                    tip_id=uuid4(),
                    queue="county",
                    reason="r",
                    catalogue_version="v",
                )
                await record(
                    session, new_event("whistle/test", "s", payload, now), "dispatch.cases.v1"
                )
        async with sessions() as session:
            seqs = (await session.scalars(text("SELECT seq FROM ledger_entry ORDER BY seq"))).all()
        assert seqs == [0, 1]
        for statement in (
            "UPDATE ledger_entry SET type = 'forged' WHERE seq = 0",
            "DELETE FROM ledger_entry WHERE seq = 1",
            "TRUNCATE ledger_entry",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with sessions() as session, session.begin():
                    await session.execute(text(statement))
        async with sessions() as session:
            assert (await session.scalar(text("SELECT count(*) FROM ledger_entry"))) == 2
    finally:
        await engine.dispose()
