"""Grid workers (网格员) report from the grids they answer for, sometimes already resolved."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.events import GeoPoint, Sha256
from services.intake import channels
from services.intake.channels import GridId, NewTip, TipAccepted, TipText
from services.intake.edges import IdempotencyKey, ProblemRoute, answer
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1/grid", tags=["grid workers"], route_class=ProblemRoute)


class GridReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grid_id: GridId
    location: GeoPoint | None = None
    text: TipText
    attachments: list[Sha256] = Field(default_factory=list, max_length=20)
    resolved_on_spot: bool = False
    resolution_note: str | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _note_when_resolved(self) -> GridReportIn:
        # 即时解决 still becomes a case, so it counts; what was done must be on record.
        if self.resolved_on_spot and not self.resolution_note:
            raise ValueError("a report resolved on the spot needs a resolution_note")
        return self


@router.post(
    "/reports",
    status_code=201,
    response_model=TipAccepted,
    responses={200: {"description": "a retry: the original answer"}},
)
async def report(
    body: GridReportIn,
    runtime: RuntimeDep,
    response: Response,
    principal: Annotated[Principal, Depends(require_roles("grid_worker"))],
    idempotency_key: IdempotencyKey = None,
) -> TipAccepted:
    if not principal.may_act_on("grid", body.grid_id):
        raise Problem(403, "Forbidden", f"You do not report for grid {body.grid_id}.")
    new = NewTip(
        channel="grid",
        text=body.text,
        location=body.location,
        grid_id=body.grid_id,
        attachments=tuple(body.attachments),
        resolved_on_spot=body.resolved_on_spot,
        resolution_note=body.resolution_note,
        # Scoped to the worker: two workers' keys never collide.
        dedupe_key=f"{principal.subject}:{idempotency_key}" if idempotency_key else None,
        client_key=idempotency_key,
        external_ref=principal.subject,
    )
    return answer(await channels.receive(runtime, new), response)
