"""Proactive inspection plans (issue #15, item 6): the township's joint inspection day
(综合查一次) and the patrol routes of its grids (定岗巡查), as reference data
(``deploy/config/inspections.yaml``), and the rule saying which tasks fall due on a day.

综合查一次 is every township's, on Tuesday unless ``inspections.yaml`` gives the township another
weekday; the units taking part are those it names, else the township's own team and its
seconded squads (the "7+9"). A patrol route names its unit, its grids and its weekdays.

Pure: plans and a date in, tasks out. The business calendar (holidays, 调休 working weekends)
is escalation's (``services/escalation/calendar.py``) and no layer below the services holds it,
so a task falls on its weekday whether or not it is a public holiday; a township that does not
inspect on a holiday marks the task missed or completes it the next working day (late).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
DEFAULT_JOINT_DAY: Weekday = "tuesday"
PlanKind = Literal["joint", "patrol"]
CODE = r"^[A-Za-z0-9_-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JointInspectionDay(_Strict):
    """A township's own 综合查一次: another weekday than Tuesday, or other units taking part."""

    township: str
    weekday: Weekday = DEFAULT_JOINT_DAY
    # None: the township's own team and its seconded squads.
    units: list[str] | None = Field(default=None, min_length=1)


class PatrolRoute(_Strict):
    """定岗巡查: one unit walks these grids on these weekdays."""

    id: str = Field(pattern=CODE)
    name: str = Field(min_length=1)
    unit: str
    grids: list[str] = Field(min_length=1)
    weekdays: list[Weekday] = Field(min_length=1)


class InspectionPlans(_Strict):
    version: str
    joint_inspection_days: list[JointInspectionDay] = []
    patrol_routes: list[PatrolRoute] = []


@dataclass(frozen=True)
class InspectionPlan:
    """One plan in force, resolved against the county: who inspects where, on which weekdays."""

    id: str  # JOINT-<township> for 综合查一次, the route's id for a patrol
    kind: PlanKind
    name: str
    township: str
    units: tuple[str, ...]
    grids: tuple[str, ...]  # empty for 综合查一次: the whole township
    weekdays: frozenset[int]  # date.weekday(): Monday 0 … Sunday 6


@dataclass(frozen=True)
class DueTask:
    """One unit's inspection task of one plan on one day."""

    plan_id: str
    kind: PlanKind
    name: str
    township: str
    unit: str
    grids: tuple[str, ...]
    due_on: date


def weekday_number(day: Weekday) -> int:
    return WEEKDAYS.index(day)


def joint_plan_id(township: str) -> str:
    return f"JOINT-{township}"


def tasks_due(plans: tuple[InspectionPlan, ...], day: date) -> list[DueTask]:
    """Every unit's task falling due on ``day``: one per unit of each plan on its weekday."""
    return [
        DueTask(plan.id, plan.kind, plan.name, plan.township, unit, plan.grids, day)
        for plan in plans
        if day.weekday() in plan.weekdays
        for unit in plan.units
    ]


def due_dates(plan: InspectionPlan, start: date, end: date) -> list[date]:
    """The days from ``start`` up to ``end`` (exclusive) on which ``plan`` falls due."""
    days = (start + timedelta(days=n) for n in range((end - start).days))
    return [day for day in days if day.weekday() in plan.weekdays]
