"""The business calendar in force (``GET /v1/calendar``) and its reload without a restart
(``POST /v1/calendar/reload``, like ``kill -HUP``); the rules are in ``calendar_watch.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from services.escalation.calendar import CalendarError
from services.escalation.calendar_watch import CalendarStatus, watch_of
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["calendar"])
# Whoever reads deadlines may know how they are counted; the county changes the calendar.
Reader = Annotated[
    Principal,
    Depends(
        require_roles(
            "dispatcher", "county_department", "county_supervisor", "auditor", "unit_member"
        )
    ),
]
Keeper = Annotated[Principal, Depends(require_roles("admin", "county_supervisor"))]


class CalendarView(BaseModel):
    version: str = Field(description="the version every clock records (calendar_version)")
    years: list[int] = Field(description="the years whose State Council notice it holds")
    provisional: bool = Field(
        description="the county's current year is missing: its deadlines are counted Monday "
        "to Friday and counted again once the year is added"
    )
    missing_years: list[int]
    notice: str | None = Field(description="the banner the pages show while provisional")


class ReloadView(CalendarView):
    recounted: int = Field(description="provisional clocks counted again on this calendar")


def _view(status: CalendarStatus) -> dict[str, object]:
    return {
        "version": status.version,
        "years": status.years,
        "provisional": status.provisional,
        "missing_years": status.missing_years,
        "notice": status.notice(),
    }


@router.get("/calendar", response_model=CalendarView)
async def calendar_in_force(principal: Reader, runtime: RuntimeDep) -> CalendarView:
    return CalendarView.model_validate(_view(watch_of(runtime).status()))


@router.post("/calendar/reload", response_model=ReloadView)
async def reload(principal: Keeper, runtime: RuntimeDep) -> ReloadView:
    watch = watch_of(runtime)
    try:
        _, recounted = await watch.reload()
    except CalendarError as exc:
        version = watch.current().version
        raise Problem(
            422,
            "Invalid calendar",
            f"节假日日历文件有误，未重新加载；仍使用版本 {version}。",
            reasons=exc.reasons,
            version_in_force=version,
        ) from exc
    return ReloadView.model_validate({**_view(watch.status()), "recounted": recounted})
