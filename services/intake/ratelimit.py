"""Rate limits: fixed windows counted in PostgreSQL, so every intake replica shares them.

One ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` per check: the count and the decision come
back in one round trip, and concurrent requests cannot both slip under the limit. A request
counts against its limits in a transaction of its own (``enforce``), so that a refused request
still counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import database
from services.intake.errors import RateLimited
from services.runtime.service import Runtime

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window: timedelta


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int


def window_of(now: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """The fixed window ``now`` falls in: windows are aligned to the Unix epoch."""
    index = (now - EPOCH) // window
    start = EPOCH + index * window
    return start, start + window


def decide(count: int, limit: Limit, now: datetime) -> Decision:
    if count <= limit.max_hits:
        return Decision(True, 0)
    _, end = window_of(now, limit.window)
    return Decision(False, max(1, int((end - now).total_seconds() + 0.999)))


_HIT = text(
    """
    INSERT INTO rate_counter (name, key, window_start, hits)
    VALUES (:name, :key, :window_start, 1)
    ON CONFLICT (name, key, window_start) DO UPDATE SET hits = rate_counter.hits + 1
    RETURNING hits
    """
)


async def hit(session: AsyncSession, limit: Limit, key: str, now: datetime) -> Decision:
    """Count one hit against ``limit`` for ``key`` and say whether it is allowed."""
    start, _ = window_of(now, limit.window)
    count = await session.scalar(_HIT, {"name": limit.name, "key": key, "window_start": start})
    return decide(int(count or 0), limit, now)


async def enforce(runtime: Runtime, checks: Sequence[tuple[Limit, str]]) -> None:
    """Count one request against each ``(limit, key)``; RateLimited, with the longest wait,
    if any of them is exceeded."""
    now = runtime.clock()
    async with database.transaction(runtime) as session:
        decisions = [await hit(session, limit, key, now) for limit, key in checks]
    refused = [d for d in decisions if not d.allowed]
    if refused:
        raise RateLimited(max(d.retry_after_seconds for d in refused))


async def exceeded(session: AsyncSession, limit: Limit, key: str, now: datetime) -> Decision:
    """Whether one more hit for ``key`` would be over ``limit``, without counting one."""
    start, _ = window_of(now, limit.window)
    count = await session.scalar(
        text(
            "SELECT hits FROM rate_counter "
            "WHERE name = :name AND key = :key AND window_start = :window_start"
        ),
        {"name": limit.name, "key": key, "window_start": start},
    )
    return decide(int(count or 0) + 1, limit, now)


async def purge(session: AsyncSession, before: datetime) -> None:
    await session.execute(
        text("DELETE FROM rate_counter WHERE window_start < :before"), {"before": before}
    )
