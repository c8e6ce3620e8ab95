"""``GET /v1/assessments/sheet``: the printable assessment sheet (派驻人员考核表) of a seconded
unit for a month, quarter or year — each officer's figures and the township's opinion, with
the seal. Read by the county (auditor, county_supervisor), the township's leader
(``township:<code>``) and the department whose officers are seconded (``dept:<code>``)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from reference.county import ReferenceData, UnitKind
from services.ledger.assessment_sheet import Officer, Opinion, render
from services.ledger.kpi_api import FIRST_DAY, LAST_DAY
from services.ledger.kpi_store import MetricScope, tally
from services.ledger.kpis import Counts, PeriodKind, local_day, period_of
from services.ledger.models import KpiAssessment
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["assessment"])

SHEET_READERS = ("auditor", "county_supervisor", "township_leader", "county_department")


def _may_read(principal: Principal, township: str, department: str | None) -> bool:
    if principal.roles & {"auditor", "county_supervisor"}:
        return True
    return principal.may_act_on("township", township) or (
        department is not None and principal.may_act_on("dept", department)
    )


@router.get("/assessments/sheet", response_class=HTMLResponse)
async def sheet(
    principal: Annotated[Principal, Depends(require_roles(*SHEET_READERS))],
    runtime: RuntimeDep,
    unit: str,
    period: PeriodKind = "month",
    at: Annotated[date | None, Query(ge=FIRST_DAY, le=LAST_DAY)] = None,
) -> HTMLResponse:
    reference: ReferenceData = runtime.state["reference"]
    scope: MetricScope = runtime.state["kpi_scope"]
    squad = reference.units.get(unit)
    if (
        squad is None
        or squad.kind is not UnitKind.SECONDED_SQUAD
        or squad.township is None
        or not _may_read(principal, squad.township, squad.department)
    ):
        # Another township's or department's unit is answered as unknown: nothing revealed.
        raise Problem(404, "未找到派驻机构", f"没有您可查看的派驻机构 {unit}。")
    now = runtime.clock()
    chosen = period_of(period, at or local_day(now, scope.timezone))
    staff_ids = [member.id for member in squad.staff]
    async with runtime.sessions() as session:
        figures = await tally(
            session,
            chosen,
            "staff",
            now,
            scope.timezone,
            scope.unit_departments,
            scope.county.narrowed(principal.counties()),
        )
        rows = (
            await session.scalars(
                select(KpiAssessment).where(
                    KpiAssessment.period == chosen.label,
                    KpiAssessment.staff.in_(staff_ids),  # type: ignore[attr-defined]
                )
            )
        ).all()
    opinions = {
        row.staff: Opinion(
            row.grade, row.opinion, row.seal, f"{local_day(row.assessed_at, scope.timezone)}"
        )
        for row in rows
    }
    officers = [
        Officer(m.id, m.name, figures.counts.get(m.id, Counts()), opinions.get(m.id))
        for m in squad.staff
    ]
    department = reference.departments.get(squad.department or "")
    html = render(
        squad.name,
        reference.townships[squad.township].name,
        department.name if department else "—",
        chosen.label,
        officers,
    )
    return HTMLResponse(html)
