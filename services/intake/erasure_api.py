"""Erasure on request (个人信息删除): an administrator erases one tip's personal data by its
tracking number — the same service call as ``whistle erase`` (services/intake/erasure.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from services.intake.edges import ProblemRoute
from services.intake.erasure import REQUEST_BASIS, Erasure, request_erasure
from services.runtime.auth import Principal, require_roles
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=ProblemRoute)

ERASER = "admin"
"""The one role that may erase: erasure cannot be undone."""


class ErasureIn(BaseModel):
    legal_basis: str = Field(
        default=REQUEST_BASIS, min_length=1, max_length=500, description="the rule it is erased by"
    )


class ErasureOut(BaseModel):
    tip_id: UUID
    tracking_no: str
    erased_at: datetime
    erased_by: str


@router.post(
    "/tips/{tracking_no}/erasure",
    status_code=201,
    response_model=ErasureOut,
    responses={404: {"description": "no such tip"}, 409: {"description": "erased before"}},
)
async def erase_tip(
    tracking_no: str,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(require_roles(ERASER))],
    body: ErasureIn | None = None,
) -> ErasureOut:
    """Erase the tip's personal data now, whatever its case's state, and tell dispatch and the
    ledger (``whistle.personal_data.erased``). Cannot be undone."""
    erasure = Erasure("request", (body or ErasureIn()).legal_basis, principal.subject)
    tip_id, now = await request_erasure(runtime, tracking_no, erasure)
    return ErasureOut(
        tip_id=tip_id, tracking_no=tracking_no, erased_at=now, erased_by=principal.subject
    )
