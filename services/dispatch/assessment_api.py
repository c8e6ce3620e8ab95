"""``POST /v1/assessments``: a township leader's assessment opinion (考核意见) of a seconded
officer for a period, sealed in the township's name, recorded as ``whistle.staff.assessed`` on
the case topic through the outbox (``assessment_service``); the ledger keeps it."""

from __future__ import annotations

from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import AssessmentGrade, StaffAssessed
from services.dispatch.assessment_service import record_assessment
from services.dispatch.assessments import NotAssessable
from services.dispatch.dependencies import chosen_reference
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["assessment"])

TownshipLeader = Annotated[Principal, Depends(require_roles("township_leader"))]


class AssessmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    staff_id: str = Field(min_length=1, max_length=64)
    period: str = Field(description="2026-12, 2026-Q4 or 2026")
    grade: AssessmentGrade
    opinion: str = Field(min_length=1, max_length=2000, description="考核意见")


@router.post("/assessments", response_model=StaffAssessed, status_code=201)
async def assess(
    body: AssessmentIn, principal: TownshipLeader, runtime: RuntimeDep
) -> StaffAssessed:
    """Records the opinion; a later one for the same officer and period replaces it."""
    try:
        async with runtime.sessions() as session, session.begin():
            return record_assessment(
                session,
                # The leader's county's: the staff it may assess are seconded within it.
                chosen_reference(runtime, principal, None),
                principal,
                body.staff_id,
                body.period,
                body.grade,
                body.opinion,
                runtime.clock(),
                uuid4(),
            )
    except NotAssessable as refusal:
        raise Problem(refusal.status, refusal.title, refusal.detail) from refusal
