"""The service layer of inspection tasks (issue #15, item 6): planning a day's tasks from the
plans in force, reading a caller's tasks, and completing one with its findings. Each works in
the caller's transaction and stages its event on ``dispatch.cases.v1`` (keyed by the task) in
it, through the outbox.

Planning is safe to run from every replica at once: the day's tasks are inserted with ``ON
CONFLICT DO NOTHING`` on the unique (plan, unit, day), and only the rows this transaction
inserted stage ``whistle.inspection.planned``; a transaction-scoped advisory lock makes the
other replicas skip the pass rather than queue behind it. A task is planned, and announced,
once.

The findings of a completed task travel on ``whistle.inspection.completed``; intake turns each
into a tip on channel ``inspection`` through its one acceptance path, and the tip becomes a case
as any other (``services/intake/consumers.py``).

Every county plans from its own ``inspections.yaml`` (tenancy, docs/scale.md): each task, and
its events, carry the county of the plan, and a caller reads and completes only its counties'
tasks (another county's is answered as unknown, 404)."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import InspectionFinding, InspectionTaskCompleted, InspectionTaskPlanned
from contracts.topics import CASES
from reference.county import CountySet, ReferenceData
from reference.inspections import tasks_due
from services.dispatch.cases import SOURCE
from services.dispatch.inspections import NotCompletable, TaskFacts, completion_refusal
from services.dispatch.models import DONE, PLANNED, InspectionTask
from services.dispatch.queries import scoped_to
from services.runtime.auth import Principal
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.outbox import stage

log = logging.getLogger(__name__)

# One lock for planning, whichever replica plans: a stable 32-bit key.
PLANNING_LOCK_KEY = zlib.crc32(b"whistle.dispatch.inspection-planning")


async def plan_day(
    session: AsyncSession, reference: ReferenceData, day: date, now: datetime
) -> list[InspectionTask]:
    """Create the tasks of ``reference``'s county due on ``day`` that do not exist yet and stage
    their events; the tasks this call created (none if another replica is planning right now: it
    plans the same). The lock is the transaction's: a pass planning every county takes it once,
    for its first county, and holds it for the others."""
    locked = await session.scalar(select(func.pg_try_advisory_xact_lock(PLANNING_LOCK_KEY)))
    if not locked:
        return []
    due = tasks_due(reference.inspection_plans, day)
    if not due:
        return []
    county = reference.county.code
    rows = [
        {
            "id": uuid7(),
            "county": county,
            "plan_id": task.plan_id,
            "kind": task.kind,
            "name": task.name,
            "township_code": task.township,
            "unit_id": task.unit,
            "grid_ids": list(task.grids),
            "due_on": task.due_on,
            "planned_at": now,
            "status": PLANNED,
        }
        for task in due
    ]
    table = InspectionTask.__table__  # type: ignore[attr-defined]
    inserted = set(
        (
            await session.scalars(
                insert(table).values(rows).on_conflict_do_nothing().returning(table.c.id)
            )
        ).all()
    )
    created = []
    for row in rows:
        if row["id"] not in inserted:
            continue  # planned before (an earlier pass, another replica)
        task = InspectionTask(**row)
        created.append(task)
        planned = InspectionTaskPlanned(
            task_id=task.id,
            plan_id=task.plan_id,
            kind=task.kind,  # type: ignore[arg-type]
            name=task.name,
            township_code=task.township_code,
            unit_id=task.unit_id,
            grid_ids=task.grid_ids,
            due_on=task.due_on,
            planned_at=now,
        )
        stage(session, CASES, new_event(SOURCE, str(task.id), planned, now, county))
    return created


async def tasks_for(
    session: AsyncSession, principal: Principal, since: date, until: date
) -> list[InspectionTask]:
    """The caller's tasks due from ``since`` to ``until`` (inclusive), the latest day first."""
    rows = await session.scalars(
        select(InspectionTask)
        .where(
            of_counties(principal),
            # The roles reaching this are the unit's, the township's and the county supervisor.
            scoped_to(principal, InspectionTask.township_code, InspectionTask.unit_id),
            InspectionTask.due_on >= since,  # type: ignore[operator]
            InspectionTask.due_on <= until,  # type: ignore[operator]
        )
        .order_by(InspectionTask.due_on.desc(), InspectionTask.unit_id, InspectionTask.plan_id)  # type: ignore[attr-defined]
    )
    return list(rows.all())


def of_counties(principal: Principal) -> ColumnElement[bool]:
    """The tasks of the principal's counties (``county:<code>``; a token naming none is the
    default county's, ``county:*`` the city's), as dispatch scopes its cases by county."""
    readable = principal.counties()
    if readable is None:
        return true()
    return InspectionTask.county.in_(sorted(readable))  # type: ignore[attr-defined]


async def complete(
    session: AsyncSession,
    counties: CountySet,
    principal: Principal,
    task_id: object,
    findings: Sequence[InspectionFinding],
    now: datetime,
) -> InspectionTask:
    """Record the task done with ``findings`` (none found is a result too) and stage
    ``whistle.inspection.completed``; NotCompletable with nothing changed. A task of another
    county than the principal's is unknown; the findings' grids are checked in the task's."""
    task = await session.scalar(
        select(InspectionTask)
        .where(InspectionTask.id == task_id, of_counties(principal))  # type: ignore[arg-type]
        .with_for_update()
    )
    if task is None:
        raise NotCompletable(404, "未找到巡查任务", "本单位没有这项巡查任务。")
    facts = TaskFacts(task.unit_id, task.township_code, task.status, task.due_on)
    refusal = completion_refusal(
        facts,
        principal.roles,
        principal.scopes,
        [f.grid_id for f in findings],
        counties.of(task.county),
    )
    if refusal is not None:
        raise refusal
    task.status, task.completed_by, task.completed_at = DONE, principal.subject, now
    task.findings = [f.model_dump(mode="json", exclude_none=True) for f in findings]
    completed = InspectionTaskCompleted(
        task_id=task.id,
        plan_id=task.plan_id,
        kind=task.kind,  # type: ignore[arg-type]
        township_code=task.township_code,
        unit_id=task.unit_id,
        due_on=task.due_on,
        findings=list(findings),
        completed_by=principal.subject,
        completed_at=now,
    )
    stage(session, CASES, new_event(SOURCE, str(task.id), completed, now, task.county))
    return task


class InspectionScheduler:
    """Plans each day's inspection tasks of every county (``counties``: each county's reference
    data in force), on the deployment's date by the injected clock, every
    ``interval_seconds``: a pass finding the day planned creates nothing."""

    def __init__(
        self,
        sessions: Sessions,
        counties: Callable[[], Iterable[ReferenceData]],
        clock: Clock,
        timezone: str,
        *,
        interval_seconds: float,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._counties = counties
        self._clock = clock
        self._zone = ZoneInfo(timezone)
        self._interval = interval_seconds
        self._after_commit = after_commit

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inspection planning pass failed; retrying")
            await asyncio.sleep(self._interval)

    async def run_once(self) -> list[InspectionTask]:
        """Plan today's tasks of every county, in one transaction; the ones this pass created."""
        now = self._clock()
        today = now.astimezone(self._zone).date()
        created: list[InspectionTask] = []
        async with self._sessions() as session, session.begin():
            for reference in self._counties():
                created += await plan_day(session, reference, today, now)
        if created:
            self._after_commit()
            log.info("planned %d inspection tasks", len(created))
        return created
