"""Database engine and sessions, and creating a service's database on a server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Table, bindparam, event
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

Sessions = async_sessionmaker[AsyncSession]


# A pooled connection idle at least this long is pinged before use. SQLAlchemy's
# pool_pre_ping pings at every checkout: with asyncpg that is BEGIN, ";" and ROLLBACK, three
# round trips, which under load were a third of a web tip's (docs/benchmarks.md). A connection
# in steady use has just proved itself; one that sat idle may have outlived a PostgreSQL
# restart. Under load a restart is noticed by the first statement that fails: SQLAlchemy then
# invalidates the whole pool, so the next checkouts connect afresh.
PING_AFTER_IDLE_SECONDS = 2.0


def create_engine(url: str, *, pool_size: int = 10, role: str | None = None) -> AsyncEngine:
    """``role``: work as this role (``SET ROLE`` at connection start) rather than as the login
    user, so that the service has only that role's privileges."""
    connect_args = {"server_settings": {"role": role}} if role else {}
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args=connect_args,
    )
    ping_when_idle(engine, PING_AFTER_IDLE_SECONDS)
    return engine


def ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a connection checked out after ``idle_seconds`` or more in the pool; one that does
    not answer is replaced before anyone uses it."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _idle_from(dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # new, or just back from work
        try:
            alive = engine.sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the pooled connection did not answer a ping") from exc
        if not alive:
            raise DisconnectionError("the pooled connection did not answer a ping")


_IDLE_SINCE = "whistle_idle_since"


def bound_waits(engine: AsyncEngine, *, connect_seconds: float, statement_seconds: float) -> None:
    """Make the engine's new connections give up connecting after ``connect_seconds`` and any
    statement after ``statement_seconds``, with ``TimeoutError``. Client-side, unlike
    PostgreSQL's ``statement_timeout``: a server that stopped answering (frozen, cut off by the
    network) cannot enforce anything. Install before the engine's first connection."""

    @event.listens_for(engine.sync_engine, "do_connect")
    def _bounded(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["timeout"] = connect_seconds
        cparams["command_timeout"] = statement_seconds


def bound_insert(table: Table, *columns: str) -> Insert:
    """PostgreSQL's INSERT into ``table`` with a bound parameter named after each of
    ``columns`` (every column by default): a hot statement built once at import and executed
    with a dict per row. Building ``insert().values(...)`` per row, its cache key and the ORM
    path that goes with it, was a tenth of a service's CPU under load (docs/benchmarks.md)."""
    chosen = [table.c[name] for name in columns] if columns else list(table.columns)
    return insert(table).values({c.name: bindparam(c.name, type_=c.type) for c in chosen})


def session_factory(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def command_sessions(url: str) -> AsyncIterator[Sessions]:
    """Sessions for a command that runs once (``whistle outbox-replay`` and the like): one
    connection, closed when the command is done."""
    engine = create_engine(url, pool_size=1)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def ensure_database(database_url: str) -> bool:
    """Create the database named in ``database_url`` if it does not exist; True if created."""
    url = make_url(database_url)
    name = url.database
    if not name:
        raise ValueError("the database URL names no database")
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database="postgres"
    )
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        # Identifiers cannot be bound parameters; the name is validated by quoting it.
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted}")
        return True
    finally:
        await conn.close()
