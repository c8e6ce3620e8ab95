"""Intake's units of database work for requests, each bounded in time.

A citizen, an operator's console or WeChat (which waits five seconds for its reply) must hear
back within seconds even when PostgreSQL hangs, frozen or cut off by the network. A unit
gives up after ``WHISTLE_INTAKE_DATABASE_DEADLINE_SECONDS`` with ``TimeoutError``, answered
503 like any unavailable database (services/runtime/problems.py). Its connection is dropped
without a commit, so nothing of the unit is kept and the client's retry is taken once; only a
commit already sent when the deadline struck may yet land, and a retry with the same key then
gets the original answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.runtime.service import Runtime


@asynccontextmanager
async def transaction(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """``runtime.transaction()`` within the deadline."""
    deadline = runtime.settings.intake_database_deadline_seconds
    async with asyncio.timeout(deadline), runtime.transaction() as session:
        yield session


@asynccontextmanager
async def reading(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """A session for reads within the deadline."""
    deadline = runtime.settings.intake_database_deadline_seconds
    async with asyncio.timeout(deadline), runtime.sessions() as session:
        yield session


@asynccontextmanager
async def autocommit(runtime: Runtime) -> AsyncIterator[AsyncConnection]:
    """A connection whose every statement commits by itself, within the deadline: for work
    that is one statement, where BEGIN and COMMIT would double its round trips."""
    deadline = runtime.settings.intake_database_deadline_seconds
    async with asyncio.timeout(deadline), runtime.engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")
