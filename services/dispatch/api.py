"""Dispatch's HTTP API (a first slice: reading cases; the lifecycle comes with the console)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from services.dispatch.models import Case
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import Runtime, get_runtime

router = APIRouter(prefix="/v1", tags=["cases"])

CaseReader = Annotated[
    Principal,
    Depends(require_roles("dispatcher", "unit_member", "county_supervisor", "auditor", "admin")),
]


class CaseView(BaseModel):
    id: UUID
    tip_id: UUID
    status: str
    matter_code: str | None
    township_code: str | None
    village_code: str | None
    grid_id: str | None
    urgency: str
    unit_id: str | None
    staff_id: str | None
    queue: str | None
    catalogue_version: str
    routing: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


def _may_read(principal: Principal, case: Case) -> bool:
    if principal.roles & {"county_supervisor", "auditor", "admin"}:
        return True
    if (
        "dispatcher" in principal.roles
        and case.township_code
        and principal.may_act_on("township", case.township_code)
    ):
        return True
    return bool(
        "unit_member" in principal.roles
        and case.unit_id
        and principal.may_act_on("unit", case.unit_id)
    )


@router.get("/cases/{case_id}", response_model=CaseView)
async def get_case(
    case_id: UUID, principal: CaseReader, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> CaseView:
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
    # A case outside the caller's township or unit is answered like a missing one.
    if case is None or not _may_read(principal, case):
        raise Problem(404, "Not Found", f"No case {case_id} that you may see.")
    return CaseView.model_validate(case, from_attributes=True)
