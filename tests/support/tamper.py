"""Tampering with the ledger as a PostgreSQL superuser would: triggers off, rows rewritten."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url


@asynccontextmanager
async def superuser_connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A superuser's connection to the ledger's database; the entries are restored afterwards."""
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    await conn.execute("CREATE TABLE entry_backup AS SELECT * FROM ledger_entry")
    try:
        yield conn
    finally:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("DELETE FROM ledger_entry")
            await conn.execute("INSERT INTO ledger_entry SELECT * FROM entry_backup")
        await conn.execute("DROP TABLE entry_backup")
        await conn.close()
