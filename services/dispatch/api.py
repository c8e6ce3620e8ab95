"""Dispatch's HTTP API (a first slice: reading cases; the lifecycle comes with the console)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventData, new_event
from contracts.events import (
    CaseAccepted,
    CaseAssigned,
    CaseClosed,
    CaseProgressRecorded,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseStarted,
    CaseStep,
)
from contracts.topics import CASES
from services.dispatch.handlers import SOURCE, open_load
from services.dispatch.lifecycle import (
    COUNTY,
    DISPATCHER,
    UNIT,
    Action,
    Refused,
    Status,
    acting_as,
    check,
)
from services.dispatch.models import Case
from services.dispatch.reference import ReferenceData
from services.dispatch.routing import pick_staff
from services.runtime.auth import Principal, require_roles
from services.runtime.outbox import stage
from services.runtime.problems import Problem
from services.runtime.service import Runtime, get_runtime

router = APIRouter(prefix="/v1", tags=["cases"])
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

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
    rejections: int
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
    case_id: UUID, principal: CaseReader, runtime: RuntimeDep, response: Response
) -> CaseView:
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
    # A case outside the caller's township or unit is answered like a missing one.
    if case is None or not _may_read(principal, case):
        raise Problem(404, "Not Found", f"No case {case_id} that you may see.")
    return _view(case, response)


# ---------------------------------------------------------------- the lifecycle

ROLE_OF_ACTOR = {DISPATCHER: "dispatcher", UNIT: "unit_member", COUNTY: "county_supervisor"}
CaseActor = Annotated[
    Principal, Depends(require_roles("dispatcher", "unit_member", "county_supervisor"))
]
IfMatch = Annotated[
    str | None, Header(alias="If-Match", description="the ETag of the case as you last saw it")
]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_id: str
    staff_id: str | None = None
    matter_code: str | None = Field(default=None, description="required if triage found none")


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class ProgressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000)
    evidence: list[Sha256] = Field(default_factory=list, max_length=50)


class ResolveIn(ProgressIn):
    resolution: Literal["on_the_spot", "rectified", "penalised", "unsubstantiated"]
    rectification_due: date | None = None

    @model_validator(mode="after")
    def _due_date_for_rectification(self) -> ResolveIn:
        if self.resolution == "rectified" and self.rectification_due is None:
            raise ValueError("a rectification order needs its rectification_due date")
        return self


def _actors(principal: Principal, case: Case) -> frozenset[str]:
    """In which capacities the caller may act on this case."""
    actors = set()
    if "county_supervisor" in principal.roles:
        actors.add(COUNTY)
    if (
        "dispatcher" in principal.roles
        and case.township_code
        and principal.may_act_on("township", case.township_code)
    ):
        actors.add(DISPATCHER)
    if (
        "unit_member" in principal.roles
        and case.unit_id
        and principal.may_act_on("unit", case.unit_id)
    ):
        actors.add(UNIT)
    return frozenset(actors)


def _etag(case: Case) -> str:
    return f'"{case.version}"'


def _expected_version(if_match: str | None) -> int:
    if if_match is None:
        raise Problem(
            428,
            "Precondition Required",
            "Send If-Match with the case's ETag, so that two people cannot act on one version.",
        )
    try:
        return int(if_match.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise Problem(412, "Precondition Failed", "If-Match is not a case ETag.") from exc


def _view(case: Case, response: Response) -> CaseView:
    response.headers["ETag"] = _etag(case)
    return CaseView.model_validate(case, from_attributes=True)


StepBuilder = Callable[[AsyncSession, Case, dict[str, Any]], Awaitable[EventData]]


async def _act(
    runtime: Runtime,
    principal: Principal,
    case_id: UUID,
    if_match: str | None,
    action: Action,
    build: StepBuilder,
    response: Response,
) -> CaseView:
    expected = _expected_version(if_match)
    now = runtime.clock()
    async with runtime.transaction() as session:
        case = await session.get(Case, case_id, with_for_update=True)
        if case is None or not _may_read(principal, case):
            raise Problem(404, "Not Found", f"No case {case_id} that you may see.")
        actors = _actors(principal, case)
        if not actors:
            raise Problem(403, "Forbidden", "You may see this case but not act on it.")
        if case.version != expected:
            raise Problem(
                412,
                "Precondition Failed",
                f"The case changed since you saw it (now version {case.version}); reload it.",
                headers={"ETag": _etag(case)},
            )
        status = Status(case.status)
        verdict = check(status, action, actors, case.rejections)
        if isinstance(verdict, Refused):
            raise Problem(
                409,
                "Conflict",
                verdict.reason,
                allowed_actions=[a.value for a in verdict.allowed],
            )
        role = ROLE_OF_ACTOR[acting_as(actors, action, status)]
        case.status = verdict.to.value
        case.version += 1
        case.updated_at = now
        step = {
            "case_id": case.id,
            "tip_id": case.tip_id,
            "actor": principal.subject,
            "actor_role": role,
            "version": case.version,
            "township_code": case.township_code,
            "unit_id": case.unit_id,
        }
        data = await build(session, case, step)
        stage(session, CASES, new_event(SOURCE, str(case.id), data, now))
    return _view(case, response)


@router.post("/cases/{case_id}/assign", response_model=CaseView)
async def assign(
    case_id: UUID,
    body: AssignIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    reference: ReferenceData = runtime.state["reference"]
    zone = ZoneInfo(runtime.settings.timezone)

    async def build(session: AsyncSession, case: Case, step: dict[str, Any]) -> EventData:
        unit = reference.units.get(body.unit_id)
        if unit is None:
            raise Problem(422, "Unknown unit", f"There is no unit {body.unit_id!r}.")
        by_county = step["actor_role"] == "county_supervisor"
        if not by_county and unit.township != case.township_code:
            raise Problem(403, "Forbidden", "A township dispatcher assigns to its own units.")
        item = reference.items.get(body.matter_code or case.matter_code or "")
        if item is None:
            raise Problem(422, "Matter needed", "Give the matter_code from the catalogue.")
        today = runtime.clock().astimezone(zone).date()
        if body.staff_id is not None:
            staff = next((s for s in unit.staff if s.id == body.staff_id), None)
            if staff is None or not (staff.certificate and staff.certificate.valid_on(today)):
                raise Problem(
                    422,
                    "Staff cannot enforce",
                    f"{body.staff_id} is not in {unit.id} with a valid enforcement certificate.",
                )
        else:
            load = await open_load(session)
            staff = pick_staff(unit, case.village_code, load, today, "", "").staff
        rule = "arbitration" if case.rejections else "manual"
        case.unit_id, case.staff_id = unit.id, staff.id if staff else None
        case.matter_code, case.queue = item.code, None
        explanation = [f"{step['actor_role']} {principal.subject} 指派 {unit.name}"]
        case.routing = {
            "rule": rule,
            "explanation": [*case.routing.get("explanation", []), *explanation],
        }
        return CaseAssigned(
            case_id=case.id,
            tip_id=case.tip_id,
            unit_id=unit.id,
            unit_kind=unit.kind.value,
            township_code=case.township_code,
            staff_id=case.staff_id,
            matter_code=item.code,
            authority=item.authority.value,
            urgency=case.urgency,  # type: ignore[arg-type]
            deadline_policy=item.deadline_policy,
            catalogue_version=reference.version,
            rule=rule,
            explanation=explanation,
            actor=principal.subject,
            actor_role=step["actor_role"],
        )

    return await _act(runtime, principal, case_id, if_match, Action.ASSIGN, build, response)


@router.post("/cases/{case_id}/reject", response_model=CaseView)
async def reject(
    case_id: UUID,
    body: ReasonIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    async def build(_: AsyncSession, case: Case, step: dict[str, Any]) -> EventData:
        case.rejections += 1
        if case.status == Status.ARBITRATION:
            case.queue = "arbitration"
        else:
            case.queue = f"township:{case.township_code}" if case.township_code else "county"
        case.unit_id = case.staff_id = None
        return CaseRejected(
            **step, reason=body.reason, rejections=case.rejections, queue=case.queue
        )

    return await _act(runtime, principal, case_id, if_match, Action.REJECT, build, response)


@router.post("/cases/{case_id}/progress", response_model=CaseView)
async def progress(
    case_id: UUID,
    body: ProgressIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    async def build(_: AsyncSession, case: Case, step: dict[str, Any]) -> EventData:
        return CaseProgressRecorded(**step, note=body.note, evidence=body.evidence)

    return await _act(runtime, principal, case_id, if_match, Action.PROGRESS, build, response)


@router.post("/cases/{case_id}/resolve", response_model=CaseView)
async def resolve(
    case_id: UUID,
    body: ResolveIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    async def build(_: AsyncSession, case: Case, step: dict[str, Any]) -> EventData:
        return CaseResolved(
            **step,
            resolution=body.resolution,
            note=body.note,
            rectification_due=body.rectification_due,
            evidence=body.evidence,
        )

    return await _act(runtime, principal, case_id, if_match, Action.RESOLVE, build, response)


@router.post("/cases/{case_id}/reopen", response_model=CaseView)
async def reopen(
    case_id: UUID,
    body: ReasonIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    async def build(_: AsyncSession, case: Case, step: dict[str, Any]) -> EventData:
        return CaseReopened(**step, reason=body.reason)

    return await _act(runtime, principal, case_id, if_match, Action.REOPEN, build, response)


def _register_plain_step(action: Action, model: type[CaseStep]) -> None:
    """A step that needs no body: the event records only who took it, and when."""

    async def step(
        case_id: UUID,
        principal: CaseActor,
        runtime: RuntimeDep,
        response: Response,
        if_match: IfMatch = None,
    ) -> CaseView:
        async def build(_: AsyncSession, case: Case, fields: dict[str, Any]) -> EventData:
            return model(**fields)

        return await _act(runtime, principal, case_id, if_match, action, build, response)

    router.add_api_route(
        f"/cases/{{case_id}}/{action.value}",
        step,
        methods=["POST"],
        response_model=CaseView,
        name=action.value,
        summary=f"{action.value.capitalize()} a case",
    )


for _action, _model in (
    (Action.ACCEPT, CaseAccepted),
    (Action.START, CaseStarted),
    (Action.CLOSE, CaseClosed),
):
    _register_plain_step(_action, _model)
