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
from services.ledger.merkle import Frontier, NodeId, canonical_bytes, leaf_hash
from services.ledger.recorder import Recorder
from services.ledger.store import current_root, node_hashes
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


async def test_ledger_entries_nodes_and_heads_cannot_be_changed_or_removed(infra: Infra) -> None:
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
            await record.flush(session)
            await session.execute(
                text("INSERT INTO tree_head VALUES (2, :h, now(), :h)"), {"h": b"\x00" * 32}
            )
        async with sessions() as session:
            seqs = (await session.scalars(text("SELECT seq FROM ledger_entry ORDER BY seq"))).all()
            nodes = (await session.execute(text("SELECT level, index FROM ledger_node"))).all()
        assert seqs == [0, 1]
        assert sorted(nodes) == [(0, 0), (0, 1), (1, 0)]
        for table, statements in {
            "ledger_entry": ("UPDATE ledger_entry SET type = 'forged'", "DELETE FROM ledger_entry"),
            "ledger_node": ("UPDATE ledger_node SET hash = ''", "DELETE FROM ledger_node"),
            "tree_head": ("UPDATE tree_head SET tree_size = 3", "DELETE FROM tree_head"),
        }.items():
            for statement in (*statements, f"TRUNCATE {table}"):
                with pytest.raises(DBAPIError, match=f"{table} is append-only"):
                    async with sessions() as session, session.begin():
                        await session.execute(text(statement))
        async with sessions() as session:
            assert (await session.scalar(text("SELECT count(*) FROM ledger_entry"))) == 2
            assert (await session.scalar(text("SELECT count(*) FROM ledger_node"))) == 3
            assert (await session.scalar(text("SELECT count(*) FROM tree_head"))) == 1
    finally:
        await engine.dispose()


async def test_the_tree_is_built_for_entries_recorded_before_it_existed(infra: Infra) -> None:
    url = infra.fresh_database_url("ledger")
    await ensure_database(url)
    await upgrade("ledger", url, "ledger_0001")
    entries = [canonical_bytes({"n": n, "note": "合并前的记录"}) for n in range(13)]
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            for seq, entry in enumerate(entries):
                await conn.execute(
                    text(
                        "INSERT INTO ledger_entry VALUES (:seq, 's', :id, 't', NULL, 'topic', "
                        "now(), now(), :entry, :leaf)"
                    ),
                    {"seq": seq, "id": str(seq), "entry": entry, "leaf": leaf_hash(entry)},
                )
            await conn.execute(text("UPDATE ledger_state SET size = :n"), {"n": len(entries)})
        await upgrade("ledger", url)
        expected: dict[NodeId, bytes] = {}
        frontier = Frontier()
        for entry in entries:
            expected.update(frontier.append(leaf_hash(entry)))
        async with session_factory(engine)() as session:
            assert await node_hashes(session, list(expected)) == expected
            assert (await session.scalar(text("SELECT count(*) FROM ledger_node"))) == len(expected)
            assert (await current_root(session)) == (len(entries), frontier.root())
    finally:
        await engine.dispose()
