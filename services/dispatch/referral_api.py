"""移送: a county department refers a matter that belongs to a township (POST /v1/referrals).

A thin edge: the case service (``CaseService.refer``) judges the referral by the authority
rule and opens the township's case; its refusals leave as problems (problems.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from services.dispatch.cases import Referral
from services.dispatch.dependencies import RuntimeDep, changing
from services.dispatch.views import CaseView, case_view
from services.runtime.auth import Principal, require_roles

router = APIRouter(prefix="/v1", tags=["referrals"])

# A county department's officer (scope dept:<code>) refers for their own department only.
Department = Annotated[Principal, Depends(require_roles("county_department"))]


class ReferralIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    department_code: str = Field(min_length=1, max_length=32, description="the referring one")
    matter_code: str = Field(min_length=1, max_length=32, description="a catalogue item")
    township_code: str = Field(min_length=1, max_length=32)
    grid_id: str | None = Field(default=None, max_length=64, description="the grid, if known")
    place: str | None = Field(default=None, max_length=500, description="where, in words")
    facts: str = Field(min_length=1, max_length=4000, description="what the department found")
    officer: str | None = Field(default=None, max_length=200, description="else the token's")


@router.post("/referrals", status_code=201, response_model=CaseView)
async def refer(
    body: ReferralIn, caller: Department, runtime: RuntimeDep, response: Response
) -> CaseView:
    """Open the township's case from the department's referral, assigned by the authority
    rule; a matter the township may not lead (county-only, assist, unclaimed, out-of-list) is
    refused (422, 不予移送)."""
    async with changing(runtime) as cases:
        case = await cases.refer(caller, Referral(**body.model_dump()))
    return case_view(case, response)
