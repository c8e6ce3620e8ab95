"""Escalation's HTTP API (a first slice: a case's deadlines)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from services.escalation.models import CaseDeadline
from services.runtime.auth import Principal, require_roles
from services.runtime.service import Runtime, get_runtime

router = APIRouter(prefix="/v1", tags=["deadlines"])


class DeadlineView(BaseModel):
    kind: str
    round: int
    status: str
    started_at: datetime
    due_at: datetime
    warn_at: datetime
    policy_id: str
    stopped_at: datetime | None
    late_by_seconds: int | None
    provisional_reason: str | None


class CaseDeadlines(BaseModel):
    case_id: UUID
    deadlines: list[DeadlineView]


@router.get("/cases/{case_id}/deadlines", response_model=CaseDeadlines)
async def case_deadlines(
    case_id: UUID,
    _: Annotated[
        Principal,
        Depends(require_roles("dispatcher", "county_supervisor", "county_department", "auditor")),
    ],
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> CaseDeadlines:
    async with runtime.sessions() as session:
        rows = (
            await session.scalars(
                select(CaseDeadline)
                .where(CaseDeadline.case_id == case_id)
                .order_by(CaseDeadline.started_at, CaseDeadline.due_at)  # type: ignore[arg-type]
            )
        ).all()
    return CaseDeadlines(
        case_id=case_id,
        deadlines=[DeadlineView.model_validate(r, from_attributes=True) for r in rows],
    )
