"""Rate limits, kept in PostgreSQL so that every intake replica shares them.

The rule is GCRA (``services/intake/gcra.py``): one row per limit and key holding its
theoretical arrival time. A hit is one ``INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING``
that applies the same rule in SQL: it moves the row on only if the request is allowed, and
the row lock it takes makes concurrent requests for one key wait for each other, so they cannot
both pass on the same allowance. A refused request changes nothing (its row stays locked until
the transaction ends, so the ``Retry-After`` read from it is the state it was refused on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.intake import database
from services.intake.errors import RateLimited
from services.intake.gcra import Verdict, emission_interval, gcra, tolerance
from services.runtime.service import Runtime

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass(frozen=True)
class Limit:
    name: str
    limit: int
    period: timedelta


_HIT = text(
    """
    INSERT INTO rate_limit AS r (name, key, tat)
    VALUES (:name, :key, CAST(:now AS timestamptz) + CAST(:interval AS interval))
    ON CONFLICT (name, key) DO UPDATE
        SET tat = GREATEST(r.tat, CAST(:now AS timestamptz)) + CAST(:interval AS interval)
        WHERE r.tat <= CAST(:now AS timestamptz) + CAST(:tolerance AS interval)
    RETURNING tat
    """
)

_TAT = text("SELECT tat FROM rate_limit WHERE name = :name AND key = :key")


async def _stored(
    session: AsyncSession | AsyncConnection, limit: Limit, key: str
) -> datetime | None:
    tat: datetime | None = await session.scalar(_TAT, {"name": limit.name, "key": key})
    return tat


async def hit(
    session: AsyncSession | AsyncConnection, limit: Limit, key: str, now: datetime
) -> Verdict:
    """One request against ``limit`` for ``key`` at ``now``: counted if allowed."""
    tat = await session.scalar(
        _HIT,
        {
            "name": limit.name,
            "key": key,
            "now": now,
            "interval": emission_interval(limit.limit, limit.period),
            "tolerance": tolerance(limit.limit, limit.period),
        },
    )
    if tat is not None:
        return Verdict(True, timedelta(0), tat)
    # Refused: the statement left the row as it was, and locked; the rule says how long to wait.
    return gcra(now, limit.limit, limit.period, await _stored(session, limit, key))


async def enforce(
    runtime: Runtime,
    checks: Sequence[tuple[Limit, str]],
    refused_as: Callable[[int], RateLimited] = RateLimited,
) -> None:
    """Count one request against each ``(limit, key)``; ``refused_as`` (RateLimited), with the
    longest wait, if any refuses it, and then it counts against none of them. Committed at
    once, before whatever the request then does."""
    now = runtime.clock()
    if len(checks) == 1:
        # One check is one statement, atomic alone: without a transaction around it, it is one
        # round trip to PostgreSQL instead of three (BEGIN, the upsert, COMMIT) on every request.
        # Refused, its Retry-After is read a moment later, from the row as it then is.
        ((limit, key),) = checks
        async with database.autocommit(runtime) as connection:
            verdict = await hit(connection, limit, key, now)
        if not verdict.allowed:
            raise refused_as(verdict.retry_after_seconds)
        return
    async with database.transaction(runtime) as session:
        verdicts = [await hit(session, limit, key, now) for limit, key in checks]
        refused = [v for v in verdicts if not v.allowed]
        if refused:
            # Raised inside: the transaction rolls back what the allowed checks counted.
            raise refused_as(max(v.retry_after_seconds for v in refused))


_GIVE_BACK = text(
    "UPDATE rate_limit SET tat = tat - CAST(:interval AS interval)"
    " WHERE name = :name AND key = :key"
)


async def give_back(session: AsyncSession, checks: Sequence[tuple[Limit, str]]) -> None:
    """A request that turned out not to count (a right access code): the turn it took from each
    ``(limit, key)`` is returned, in the caller's transaction."""
    for limit, key in checks:
        interval = emission_interval(limit.limit, limit.period)
        await session.execute(_GIVE_BACK, {"name": limit.name, "key": key, "interval": interval})


async def purge(session: AsyncSession, before: datetime) -> int:
    """Drop the rows whose allowance was whole again before ``before``: a key without a row
    is a key with its whole allowance, so they say nothing. How many were dropped."""
    result = await session.execute(
        text("DELETE FROM rate_limit WHERE tat < :before"), {"before": before}
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
