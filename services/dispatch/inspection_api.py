"""Inspection tasks over HTTP (issue #15, item 6): ``GET /v1/inspections`` lists a caller's
tasks (a unit's members their unit's, a dispatcher their township's, the county supervisor
all) with whether each is planned, done or missed; ``POST /v1/inspections/{task_id}/completion``
is an officer of the unit completing one with what was found, each finding to become a tip on
channel ``inspection`` (``inspection_service``)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.events import InspectionFinding
from services.dispatch import inspection_service
from services.dispatch.inspections import COMPLETER, READERS, NotCompletable, state
from services.dispatch.models import InspectionTask
from services.dispatch.wiring import current_counties, local_today
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["inspection"])

Reader = Annotated[Principal, Depends(require_roles(*READERS))]
Officer = Annotated[Principal, Depends(require_roles(COMPLETER))]
STATE_TEXT = {"planned": "待巡查", "done": "已完成", "missed": "已逾期未巡查"}
KIND_TEXT = {"joint": "综合查一次", "patrol": "定岗巡查"}


class GridRef(BaseModel):
    id: str
    name: str


class TaskOut(BaseModel):
    id: UUID
    county: str = Field(description="the county's 6-digit division code")
    plan_id: str
    kind: str
    kind_text: str
    name: str
    township_code: str
    unit_id: str
    unit_name: str
    grid_ids: list[str]
    grid_names: list[str]
    due_on: date
    state: str = Field(description="planned, done, or missed (its day passed undone)")
    state_text: str
    completed_by: str | None
    completed_at: datetime | None
    findings: list[dict[str, Any]] | None = Field(description="[] when none was found")
    finding_grids: list[GridRef] = Field(
        description="where a finding may be put: the route's grids, or the township's for "
        "综合查一次 (any grid of the township is accepted)"
    )


class CompletionIn(BaseModel):
    """What the inspection found. Say ``none_found`` rather than send nothing, so that an empty
    form is not taken for a finding-free inspection."""

    model_config = ConfigDict(extra="forbid")
    findings: list[InspectionFinding] = Field(default_factory=list, max_length=50)
    none_found: bool = False

    @model_validator(mode="after")
    def _one_or_the_other(self) -> CompletionIn:
        if self.none_found == bool(self.findings):
            raise ValueError("give findings, or none_found: true when nothing was found")
        return self


def _out(task: InspectionTask, today: date, runtime: RuntimeDep) -> TaskOut:
    reference = current_counties(runtime).of(task.county)  # its names are its county's
    unit = reference.units.get(task.unit_id)
    grids = [reference.grids[g][2].name if g in reference.grids else g for g in task.grid_ids]
    township = reference.townships.get(task.township_code)
    walked = task.grid_ids or [
        g.id for v in (township.villages if township else []) for g in v.grids
    ]
    current = state(task.status, task.due_on, today)
    return TaskOut(
        **task.model_dump(exclude={"status", "planned_at"}),
        kind_text=KIND_TEXT.get(task.kind, task.kind),
        unit_name=unit.name if unit else task.unit_id,
        grid_names=grids,
        state=current,
        state_text=STATE_TEXT[current],
        finding_grids=[
            GridRef(id=g, name=reference.grids[g][2].name) for g in walked if g in reference.grids
        ],
    )


@router.get("/inspections", response_model=list[TaskOut])
async def list_tasks(
    principal: Reader,
    runtime: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=92, description="how many days back, today included")] = 14,
) -> list[TaskOut]:
    """The caller's inspection tasks of the last ``days`` days, the latest first."""
    today = local_today(runtime)
    async with runtime.sessions() as session:
        tasks = await inspection_service.tasks_for(
            session, principal, today - timedelta(days=days - 1), today
        )
    return [_out(task, today, runtime) for task in tasks]


@router.post("/inspections/{task_id}/completion", response_model=TaskOut)
async def complete(
    task_id: UUID, body: CompletionIn, principal: Officer, runtime: RuntimeDep
) -> TaskOut:
    """Completes the task with its findings (or none found); each finding becomes a tip on
    channel ``inspection`` and so a case. A task is completed once (409 after)."""
    try:
        async with runtime.sessions() as session, session.begin():
            task = await inspection_service.complete(
                session,
                current_counties(runtime),
                principal,
                task_id,
                body.findings,
                runtime.clock(),
            )
    except NotCompletable as refusal:
        raise Problem(refusal.status, refusal.title, refusal.detail) from refusal
    runtime.relay.wake()  # the findings leave for intake now, not at the next poll
    return _out(task, local_today(runtime), runtime)
