"""What dispatch tells Prometheus about its cases: how many are open, in which state, where.

The gauge is refreshed from the database every ``OPEN_CASES_REFRESH_SECONDS`` by one grouped
count over the open cases (``cases.status`` is indexed). Its township label is a township code
of the reference data in force — of every county served: township codes are unique across
counties (``load_counties`` refuses a repeat), so a code is one series whichever county it is
in and no ``county`` label is needed — ``none`` for a case not located in any township (the county's
queue) or ``other`` for a code the reference data no longer has: the label set stays bounded,
and every known township and open state is set, to 0 if it has no case, so a quiet township
reads 0 rather than nothing. Never a case or tip id.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.lifecycle import OPEN_STATUSES
from services.dispatch.models import Case
from services.dispatch.wiring import current_counties
from services.runtime.service import Runtime

log = logging.getLogger(__name__)

OPEN_CASES_REFRESH_SECONDS = 15.0
NONE, OTHER = "none", "other"

OPEN_CASES = Gauge(
    "whistle_dispatch_open_cases",
    "Cases not closed, by state and township (township code of the reference data, 'none' "
    "when not located, 'other' when unknown to it)",
    ["state", "township"],
)


def township_label(code: str | None, known: frozenset[str]) -> str:
    if code is None:
        return NONE
    return code if code in known else OTHER


async def count_open_cases(
    session: AsyncSession, townships: frozenset[str]
) -> dict[tuple[str, str], int]:
    """(state, township label) → open cases, every open state and known township included."""
    counts = {
        (state.value, township): 0
        for state in OPEN_STATUSES
        for township in (*townships, NONE, OTHER)
    }
    rows = await session.execute(
        select(Case.status, Case.township_code, func.count())
        .where(Case.status.in_([s.value for s in OPEN_STATUSES]))  # type: ignore[attr-defined]
        .group_by(Case.status, Case.township_code)
    )
    for state, code, count in rows.all():
        counts[(state, township_label(code, townships))] += count
    return counts


async def refresh_open_cases(runtime: Runtime) -> dict[tuple[str, str], int]:
    """Recount the open cases and set the gauge (townships of every county in force)."""
    townships = frozenset(t for data in current_counties(runtime).values() for t in data.townships)
    async with runtime.sessions() as session:
        counts = await count_open_cases(session, townships)
    # Replaced in one step (no await in between): a scrape never sees half a refresh, and a
    # township a reload removed disappears.
    OPEN_CASES.clear()
    for (state, township), count in counts.items():
        OPEN_CASES.labels(state, township).set(count)
    return counts


async def refresh_periodically(runtime: Runtime, interval: float) -> None:
    while True:
        try:
            await refresh_open_cases(runtime)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The database may be away for a while; the gauge keeps its last values.
            log.exception("could not count the open cases")
        await asyncio.sleep(interval)
