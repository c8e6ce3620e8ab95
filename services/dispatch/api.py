"""Dispatch's HTTP API (a first slice: reading cases; the lifecycle comes with the console)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.cases import CaseStatus
from contracts.envelope import EventData, new_event
from contracts.events import (
    CaseAccepted,
    CaseAssigned,
    CaseClosed,
    CaseProgressRecorded,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseSplit,
    CaseStarted,
    CaseStep,
    TipReceived,
)
from contracts.topics import CASES
from reference.county import ReferenceData
from services.dispatch.handlers import SOURCE, open_case, open_load
from services.dispatch.lifecycle import (
    COUNTY,
    DISPATCHER,
    UNIT,
    Action,
    Refused,
    acting_as,
    check,
)
from services.dispatch.merging import SplitRefusal, check_split
from services.dispatch.models import Case, CaseTip, TipText
from services.dispatch.queries import readable_case
from services.dispatch.routing import ADMISSION_QUEUE, pick_staff, supporting_units
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
    reopens: int
    supporting_units: list[str]
    catalogue_version: str
    routing: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


async def _readable(
    session: AsyncSession, principal: Principal, case_id: UUID, *, for_update: bool = False
) -> Case:
    case = await readable_case(session, principal, case_id, for_update=for_update)
    # A case outside the caller's township or unit is answered like a missing one.
    if case is None:
        raise Problem(404, "Not Found", f"No case {case_id} that you may see.")
    return case


def _supports(principal: Principal, case: Case) -> bool:
    """联合执法: the caller is a member of one of the case's supporting units."""
    return "unit_member" in principal.roles and any(
        principal.may_act_on("unit", unit) for unit in case.supporting_units
    )


@router.get("/cases/{case_id}", response_model=CaseView)
async def get_case(
    case_id: UUID, principal: CaseReader, runtime: RuntimeDep, response: Response
) -> CaseView:
    async with runtime.sessions() as session:
        case = await _readable(session, principal, case_id)
    return _view(case, response)


# ---------------------------------------------------------------- the lifecycle

ROLE_OF_ACTOR = {DISPATCHER: "dispatcher", UNIT: "unit_member", COUNTY: "county_supervisor"}
SUPPORTING = "supporting_unit"  # acts on a joint operation it is not the lead of
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


def current_reference(runtime: Runtime) -> ReferenceData:
    """The reference data routing uses now (a reload swaps it whole)."""
    reference: ReferenceData = runtime.state["reference"]
    return reference


def local_today(runtime: Runtime) -> date:
    """The county's date now: certificates are valid by it."""
    return runtime.clock().astimezone(ZoneInfo(runtime.settings.timezone)).date()


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


async def _case_to_act_on(
    session: AsyncSession, principal: Principal, case_id: UUID, expected: int
) -> tuple[Case, frozenset[str]]:
    """The case, locked, if the caller may act on it at the version they saw; and as whom."""
    case = await _readable(session, principal, case_id, for_update=True)
    actors = _actors(principal, case)
    if not actors and _supports(principal, case):
        actors = frozenset({SUPPORTING})
    if not actors:
        raise Problem(403, "Forbidden", "You may see this case but not act on it.")
    if case.version != expected:
        raise Problem(
            412,
            "Precondition Failed",
            f"The case changed since you saw it (now version {case.version}); reload it.",
            headers={"ETag": _etag(case)},
        )
    return case, actors


async def _dispatchers_case(
    session: AsyncSession, principal: Principal, case_id: UUID, expected: int, what: str
) -> Case:
    """The case, locked, for a step only the township's dispatcher takes (``what``)."""
    case, actors = await _case_to_act_on(session, principal, case_id, expected)
    if DISPATCHER not in actors:
        raise Problem(403, "Forbidden", f"{what} is for the township's dispatcher.")
    return case


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
        case, actors = await _case_to_act_on(session, principal, case_id, expected)
        if actors == {SUPPORTING}:
            # A supporting unit records its own progress on the joint operation, nothing else.
            if action is not Action.PROGRESS:
                raise Problem(403, "Forbidden", "A supporting unit may only record progress.")
            actors = frozenset({UNIT})
        status = CaseStatus(case.status)
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
        step = case.step(principal.subject, role)
        data = await build(session, case, step)
        stage(session, CASES, new_event(SOURCE, str(case.id), data, now))
    return _view(case, response)


async def assign_case(
    runtime: Runtime,
    reference: ReferenceData,
    session: AsyncSession,
    case: Case,
    step: dict[str, Any],
    principal: Principal,
    body: AssignIn,
    rule: str,
) -> CaseAssigned:
    """Assign by hand (a dispatcher, arbitration or admission): the unit, a certified person,
    and for a joint operation the supporting units."""
    unit = reference.units.get(body.unit_id)
    if unit is None:
        raise Problem(422, "Unknown unit", f"There is no unit {body.unit_id!r}.")
    by_county = step["actor_role"] == "county_supervisor"
    if not by_county and unit.township != case.township_code:
        raise Problem(403, "Forbidden", "A township dispatcher assigns to its own units.")
    item = reference.items.get(body.matter_code or case.matter_code or "")
    if item is None:
        raise Problem(422, "Matter needed", "Give the matter_code from the catalogue.")
    today = local_today(runtime)
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
    supporting = supporting_units(item, unit, case.township_code or "", reference)
    case.unit_id, case.staff_id = unit.id, staff.id if staff else None
    case.matter_code, case.queue = item.code, None
    case.supporting_units = [u.id for u in supporting]
    explanation = [f"{step['actor_role']} {principal.subject} 指派 {unit.name}"]
    if supporting:
        names = "、".join(u.name for u in supporting)
        explanation.append(f"联合执法：{unit.name} 牵头，{names} 配合")
    case.routing = {
        "rule": rule,
        "explanation": [*case.routing.get("explanation", []), *explanation],
    }
    return case.assignment(
        unit.kind.value,
        item,
        reference.version,
        rule,
        explanation,
        actor=principal.subject,
        actor_role=step["actor_role"],
    )


@router.post("/cases/{case_id}/assign", response_model=CaseView)
async def assign(
    case_id: UUID,
    body: AssignIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    reference = current_reference(runtime)

    async def build(session: AsyncSession, case: Case, step: dict[str, Any]) -> EventData:
        if case.queue == ADMISSION_QUEUE:
            raise Problem(
                409,
                "Conflict",
                "An out-of-list case is admitted by the county (POST /v1/cases/{id}/admission).",
                allowed_actions=[],
            )
        rule = "arbitration" if case.rejections else "manual"
        return await assign_case(runtime, reference, session, case, step, principal, body, rule)

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
        if case.status == CaseStatus.ARBITRATION:
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
        case.reopens += 1
        return CaseReopened(**step, reason=body.reason)

    return await _act(runtime, principal, case_id, if_match, Action.REOPEN, build, response)


# ---------------------------------------------------------------- near-duplicate tips


class CaseTipView(BaseModel):
    tip_id: UUID
    joined_by: Literal["opening", "merge"]
    joined_at: datetime
    rule: str | None = Field(description="for a merged tip: same_grid or within_distance")
    distance_m: float | None
    text: str | None = Field(default=None, description="the citizen's words, when kept")
    left_at: datetime | None = Field(default=None, description="when it was split off")
    split_case_id: UUID | None = Field(default=None, description="the case it was split into")


@router.get("/cases/{case_id}/tips", response_model=list[CaseTipView])
async def case_tips(case_id: UUID, principal: CaseReader, runtime: RuntimeDep) -> list[CaseTipView]:
    """The case's own tip, then every tip merged into it, in the order they joined."""
    async with runtime.sessions() as session:
        case = await _readable(session, principal, case_id)
        links = await session.scalars(
            select(CaseTip)
            .where(CaseTip.case_id == case_id)  # type: ignore[arg-type]
            .order_by(CaseTip.joined_at, CaseTip.tip_id)  # type: ignore[arg-type]
        )
        merged = [
            CaseTipView(
                tip_id=link.tip_id,
                joined_by="merge",
                joined_at=link.joined_at,
                rule=link.rule,
                distance_m=link.distance_m,
                text=link.tip.get("text"),
                left_at=link.left_at,
                split_case_id=link.split_case_id,
            )
            for link in links
        ]
        own = await session.get(TipText, case.tip_id)
    opening = CaseTipView(
        tip_id=case.tip_id,
        joined_by="opening",
        joined_at=case.created_at,
        rule=None,
        distance_m=None,
        text=own.text if own else None,
    )
    return [opening, *merged]


class SplitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tip_id: UUID = Field(description="a tip that joined this case by merge")
    reason: str = Field(min_length=1, max_length=500)


class SplitView(BaseModel):
    case: CaseView = Field(description="the case the tip left")
    split_case_id: UUID = Field(description="the new case opened for the tip")


@router.post("/cases/{case_id}/split", response_model=SplitView)
async def split(
    case_id: UUID,
    body: SplitIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> SplitView:
    """The tip was not the same problem after all: it leaves the case and is triaged and
    routed as a case of its own (never merged again)."""
    expected = _expected_version(if_match)
    reference = current_reference(runtime)
    now = runtime.clock()
    async with runtime.transaction() as session:
        case = await _dispatchers_case(session, principal, case_id, expected, "Splitting a tip off")
        link = await session.get(CaseTip, body.tip_id, with_for_update=True)
        joined = link is not None and link.case_id == case.id and link.left_at is None
        refusal = check_split(
            case.status, case.tip_id, body.tip_id, {body.tip_id} if joined else ()
        )
        if refusal is SplitRefusal.ORIGINAL_TIP:
            raise Problem(
                409, "Conflict", "The case's own tip cannot be split off: only a merged tip can."
            )
        if refusal is SplitRefusal.CLOSED:
            raise Problem(409, "Conflict", "The case is closed; reopen it before splitting it.")
        if refusal is SplitRefusal.NOT_MERGED or link is None:
            raise Problem(
                422, "Not a merged tip", f"Tip {body.tip_id} has not joined this case by merge."
            )
        split_case_id = uuid7()
        link.left_at, link.split_case_id = now, split_case_id
        case.version += 1
        case.updated_at = now
        event = CaseSplit(
            **case.step(principal.subject, ROLE_OF_ACTOR[DISPATCHER]),
            split_tip_id=body.tip_id,
            split_case_id=split_case_id,
            reason=body.reason,
        )
        stage(session, CASES, new_event(SOURCE, str(case.id), event, now))
        await open_case(
            session,
            TipReceived.model_validate(link.tip),
            reference,
            now,
            confidence_threshold=runtime.settings.triage_confidence_threshold,
            zone=ZoneInfo(runtime.settings.timezone),
            case_id=split_case_id,
        )
    return SplitView(case=_view(case, response), split_case_id=split_case_id)


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
