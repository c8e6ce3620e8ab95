"""What escalation tells Prometheus about the clocks now: how many are overdue, where, whose.

A clock is overdue while it runs past its due time (``deadline.status = 'running' AND due_at <
now``, on the service's clock). Every ``OVERDUE_REFRESH_SECONDS`` one grouped count over the
running clocks (``deadline.due_at`` is indexed) sets two gauges:

- by township: the township holding the case (``case_assignment``), or for a summoned
  department's clocks the township that whistled;
- by department: the summoned department for its whistle clocks; for a case's own clocks, the
  department of the unit holding it (``none`` for a township's own team, which belongs to no
  department).

Labels are reference-data codes (``none`` when there is none, ``other`` for a code the
reference data does not know) and the clock kind; every known code and kind is set, to 0 when
nothing is overdue, so that a punctual township reads 0 rather than nothing. The ladder's own
signals (steps fired, how late) are in ``scheduler.py``, the 报到 latency in
``whistle_protocol.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from prometheus_client import Gauge
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import ClockKind
from reference.county import ReferenceData
from services.escalation.models import CaseAssignment, CaseDeadline, WhistleSummons
from services.runtime.clock import Clock
from services.runtime.db import Sessions

log = logging.getLogger(__name__)

OVERDUE_REFRESH_SECONDS = 15.0
NONE, OTHER = "none", "other"
CLOCK_KINDS: tuple[str, ...] = get_args(ClockKind)

OVERDUE_BY_TOWNSHIP = Gauge(
    "whistle_escalation_overdue_clocks_by_township",
    "Clocks running past their due time, by the township of the case (or that whistled) and "
    "clock kind",
    ["township", "kind"],
)
OVERDUE_BY_DEPARTMENT = Gauge(
    "whistle_escalation_overdue_clocks_by_department",
    "Clocks running past their due time, by the summoned department or the department of the "
    "unit holding the case ('none' for a township team) and clock kind",
    ["department", "kind"],
)


@dataclass(frozen=True)
class OverdueScope:
    """Which codes may be labels, and which department each unit belongs to."""

    townships: frozenset[str]
    departments: frozenset[str]
    unit_departments: Mapping[str, str | None]

    @classmethod
    def of(cls, reference: ReferenceData) -> OverdueScope:
        return cls(
            townships=frozenset(reference.townships),
            departments=frozenset(reference.departments),
            unit_departments={unit.id: unit.department for unit in reference.units.values()},
        )


def _label(code: str | None, known: frozenset[str]) -> str:
    if code is None:
        return NONE
    return code if code in known else OTHER


def _department(scope: OverdueScope, summoned: str | None, unit_id: str | None) -> str:
    """A whistle clock's summoned department; else the department of the unit holding it."""
    if summoned is not None:
        return _label(summoned, scope.departments)
    if unit_id is None:
        return NONE
    if unit_id not in scope.unit_departments:
        return OTHER
    return _label(scope.unit_departments[unit_id], scope.departments)


@dataclass
class Overdue:
    by_township: dict[tuple[str, str], int]
    by_department: dict[tuple[str, str], int]


async def count_overdue(session: AsyncSession, scope: OverdueScope, now: datetime) -> Overdue:
    """Overdue clocks at ``now``, every known code and kind included (0 when none)."""
    overdue = Overdue(
        by_township={(t, k): 0 for t in (*scope.townships, NONE, OTHER) for k in CLOCK_KINDS},
        by_department={(d, k): 0 for d in (*scope.departments, NONE, OTHER) for k in CLOCK_KINDS},
    )
    township = func.coalesce(WhistleSummons.township_code, CaseAssignment.township_code)
    rows = await session.execute(
        select(
            CaseDeadline.kind,
            township,
            CaseDeadline.department_code,
            CaseAssignment.unit_id,
            func.count(),
        )
        .select_from(CaseDeadline)
        .outerjoin(CaseAssignment, CaseAssignment.case_id == CaseDeadline.case_id)  # type: ignore[arg-type]
        .outerjoin(
            WhistleSummons,
            and_(
                WhistleSummons.whistle_id == CaseDeadline.whistle_id,  # type: ignore[arg-type]
                WhistleSummons.department_code == CaseDeadline.department_code,  # type: ignore[arg-type]
            ),
        )
        .where(CaseDeadline.status == "running", CaseDeadline.due_at < now)  # type: ignore[arg-type,operator]
        .group_by(CaseDeadline.kind, township, CaseDeadline.department_code, CaseAssignment.unit_id)
    )
    for kind, township_code, department_code, unit_id, count in rows.all():
        if kind not in CLOCK_KINDS:
            continue
        overdue.by_township[(_label(township_code, scope.townships), kind)] += count
        department = _department(scope, department_code, unit_id)
        overdue.by_department[(department, kind)] += count
    return overdue


async def refresh_overdue(sessions: Sessions, scope: OverdueScope, clock: Clock) -> Overdue:
    """Recount the overdue clocks at the service's time and set the gauges."""
    async with sessions() as session:
        overdue = await count_overdue(session, scope, clock())
    for (township, kind), count in overdue.by_township.items():
        OVERDUE_BY_TOWNSHIP.labels(township, kind).set(count)
    for (department, kind), count in overdue.by_department.items():
        OVERDUE_BY_DEPARTMENT.labels(department, kind).set(count)
    return overdue


async def refresh_periodically(
    sessions: Sessions, scope: OverdueScope, clock: Clock, interval: float
) -> None:
    while True:
        try:
            await refresh_overdue(sessions, scope, clock)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The database may be away for a while; the gauges keep their last values.
            log.exception("could not count the overdue clocks")
        await asyncio.sleep(interval)
