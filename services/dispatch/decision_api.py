"""A township unit's decisions of the joint meeting (联席会议议定事项), through dispatch.

``GET /v1/meeting-decisions``: a unit member their units' decisions, a dispatcher their
townships' units', the county every one. ``POST /v1/meeting-decisions/{id}/done``: a member of
the owner unit reports it done (another unit's answers 403, an unknown one 404, a second
report 409); escalation stops the decision's clock. A thin edge over
``meeting_decisions.py``; a county department reports its own decisions to escalation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import MeetingDecisionReported, Sha256
from services.dispatch import meeting_decisions
from services.dispatch.queries import scoped_codes
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["meetings"])
Member = Annotated[Principal, Depends(require_roles("unit_member"))]
Reader = Annotated[
    Principal, Depends(require_roles("unit_member", "dispatcher", "county_supervisor"))
]
PROBLEM = "https://whistle.example/problems/"
TITLES = {403: "无权操作", 404: "未找到", 409: "状态冲突"}


class DoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    result: str = Field(min_length=1, max_length=4000)
    evidence: list[Sha256] = Field(default_factory=list, description="SHA-256 of each file")
    officer: str | None = Field(default=None, max_length=200)


class UnitDecisionView(BaseModel):
    decision_id: UUID
    meeting_id: UUID
    case_id: UUID
    township_code: str
    unit_id: str
    task: str
    due_at: datetime
    reported_at: datetime | None
    result: str | None
    done_at: datetime | None
    on_time: bool | None


@router.get("/meeting-decisions", response_model=list[UnitDecisionView])
async def unit_decisions(caller: Reader, runtime: RuntimeDep) -> list[UnitDecisionView]:
    units = townships = None
    if "county_supervisor" not in caller.roles:
        if "unit_member" in caller.roles:
            units = scoped_codes(caller, "unit")
        else:
            townships = scoped_codes(caller, "township")
    async with runtime.sessions() as session:
        rows = await meeting_decisions.of_units(
            session,
            None if units is not None and "*" in units else units,
            None if townships is not None and "*" in townships else townships,
        )
    return [UnitDecisionView.model_validate(r, from_attributes=True) for r in rows]


@router.post(
    "/meeting-decisions/{decision_id}/done",
    status_code=201,
    response_model=MeetingDecisionReported,
)
async def report_done(
    decision_id: UUID, body: DoneIn, member: Member, runtime: RuntimeDep
) -> MeetingDecisionReported:
    try:
        async with runtime.sessions() as session, session.begin():
            return await meeting_decisions.report(
                session,
                member,
                decision_id,
                result=body.result,
                evidence=list(body.evidence),
                officer=body.officer,
                now=runtime.clock(),
            )
    except meeting_decisions.DecisionRefused as refused:
        raise Problem(
            refused.status,
            TITLES[refused.status],
            refused.detail,
            type_=PROBLEM + refused.rule,
            rule=refused.rule,
        ) from refused
