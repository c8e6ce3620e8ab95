"""Escalation's HTTP API (a first slice: a case's deadlines).

A case's clocks are read where the case is visible, as dispatch scopes its reads: the county
(``county_supervisor``, ``auditor``, ``admin``, or a ``township:*`` / ``dept:*`` scope) every
case; a ``dispatcher`` the cases of its ``township:<code>`` scopes (the township of the case's
latest ``CaseAssigned``, or of a whistle blown on it); a ``county_department`` the cases its
``dept:<code>`` scopes were summoned to (吹哨) — all within the token's counties (``county:*``
for the city's roles, services/escalation/counties.py). Any other case is answered as a
missing one, another county's as well."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.tenancy import Counties
from services.escalation.counties import of_readers_counties
from services.escalation.models import CaseAssignment, CaseDeadline, WhistleSummons
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

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
    principal: Annotated[
        Principal,
        Depends(require_roles("dispatcher", "county_supervisor", "county_department", "auditor")),
    ],
    runtime: RuntimeDep,
) -> CaseDeadlines:
    async with runtime.sessions() as session:
        if not await _may_read(session, principal, case_id, runtime.counties):
            raise Problem(404, "Not Found", f"No case {case_id} that you may see.")
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


def _codes(principal: Principal, kind: str) -> set[str]:
    return {s.split(":", 1)[1] for s in principal.scopes if s.startswith(f"{kind}:")}


async def _may_read(
    session: AsyncSession, principal: Principal, case_id: UUID, counties: Counties | None
) -> bool:
    """Whether the principal may see the case (and so its clocks); False for an unknown case
    and for another county's."""
    known = await session.scalar(
        select(CaseDeadline.id)
        .where(
            CaseDeadline.case_id == case_id,  # type: ignore[arg-type]
            of_readers_counties(CaseDeadline.case_id, principal, counties),
        )
        .limit(1)
    )
    if known is None:
        return False
    if principal.roles & {"county_supervisor", "auditor", "admin"}:
        return True
    if "dispatcher" in principal.roles:
        townships = _codes(principal, "township")
        if "*" in townships:
            return True
        held = await session.get(CaseAssignment, case_id)
        whistled = await session.scalars(
            select(WhistleSummons.township_code).where(WhistleSummons.case_id == case_id)  # type: ignore[arg-type]
        )
        case_townships = {held.township_code if held else None, *whistled.all()}
        if townships & {t for t in case_townships if t}:
            return True
    if "county_department" in principal.roles:
        departments = _codes(principal, "dept")
        if "*" in departments:
            return True
        summoned = await session.scalar(
            select(WhistleSummons.whistle_id)
            .where(
                WhistleSummons.case_id == case_id,  # type: ignore[arg-type]
                WhistleSummons.department_code.in_(departments),  # type: ignore[attr-defined]
            )
            .limit(1)
        )
        if summoned is not None:
            return True
    return False
