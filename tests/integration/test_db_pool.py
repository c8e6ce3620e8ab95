"""The pool pings a connection only after it sat idle (services/runtime/db.py): one that outlived
its server-side session is replaced unseen, and one in steady use costs no ping."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.runtime.db import ping_when_idle
from tests.support.infra import Infra


@pytest.fixture
async def url(infra: Infra) -> str:
    return (
        make_url(infra.database_url)
        .set(drivername="postgresql+asyncpg")
        .render_as_string(hide_password=False)
    )


@pytest.fixture
async def engines() -> AsyncIterator[list[AsyncEngine]]:
    made: list[AsyncEngine] = []
    yield made
    for engine in made:
        await engine.dispose()


def _engine(url: str, idle_seconds: float, made: list[AsyncEngine]) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_seconds)
    made.append(engine)
    return engine


async def _backend(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(infra: Infra, pid: int) -> None:
    """What a PostgreSQL restart does to a pooled connection: its server side is gone."""
    conn = await asyncpg.connect(infra.database_url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_an_idle_connection_whose_session_ended_is_replaced_before_use(
    infra: Infra, url: str, engines: list[AsyncEngine]
) -> None:
    engine = _engine(url, idle_seconds=0, made=engines)  # every pooled connection counts as idle
    first = await _backend(engine)
    await _terminate(infra, first)
    assert await _backend(engine) != first  # no error reached the caller


async def test_a_connection_in_steady_use_is_not_pinged(
    infra: Infra, url: str, engines: list[AsyncEngine]
) -> None:
    engine = _engine(url, idle_seconds=3600, made=engines)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    first = await _backend(engine)
    assert await _backend(engine) == first
    assert statements == ["SELECT pg_backend_pid()"] * 2  # nothing but the work: no ping
    # The trade (docs/benchmarks.md): a session that ended under load fails the one statement
    # that finds out; the pool is invalidated and the next checkout connects afresh.
    await _terminate(infra, first)
    with pytest.raises(DBAPIError) as failed:
        await _backend(engine)
    assert failed.value.connection_invalidated
    assert await _backend(engine) != first
