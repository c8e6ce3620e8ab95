"""Dispatch's HTTP API for one case: read it, take the lifecycle's steps on it (assign, accept,
reject, start, progress, contact, resolve, close, reopen), and list or split off its merged
tips.

A thin edge: each route parses the request and calls the case service (cases.py), whose
refusals are answered as problems (problems.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contracts.events import ContactMethod, GeoPoint, Penalty
from services.dispatch.cases import PLAIN_STEPS, find_case
from services.dispatch.dependencies import (
    CaseActor,
    CaseReader,
    IfMatch,
    change_case,
    changing,
    expected_version,
    reading,
)
from services.dispatch.lifecycle import Action
from services.dispatch.queries import merged_tips, tip_texts
from services.dispatch.views import CaseView, case_view
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["cases"])


@router.get("/cases/{case_id}", response_model=CaseView)
async def get_case(
    case_id: UUID, principal: CaseReader, runtime: RuntimeDep, response: Response
) -> CaseView:
    async with reading(runtime) as session:
        case = await find_case(session, principal, case_id)
    return case_view(case, response)


# ---------------------------------------------------------------- the lifecycle

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
    evidence: list[Sha256] = Field(
        default_factory=list,
        max_length=50,
        description="SHA-256 of each file uploaded for this case (POST /v1/cases/{id}/evidence)",
    )
    point: GeoPoint | None = Field(
        default=None, description="where the officer acted; the case's grid is recorded anyway"
    )


class ResolveIn(ProgressIn):
    resolution: Literal["on_the_spot", "rectified", "penalised", "unsubstantiated"]
    rectification_due: date | None = None
    penalty: Penalty | None = Field(
        default=None,
        description="penalised: what the decision imposes (kinds; fine_yuan with a fine)",
    )

    @model_validator(mode="after")
    def _due_date_for_rectification(self) -> ResolveIn:
        if self.resolution == "rectified" and self.rectification_due is None:
            raise ValueError("a rectification order needs its rectification_due date")
        # The penalty is what the entrusted ceiling and the 重大执法决定 list are judged on.
        if (self.resolution == "penalised") != (self.penalty is not None):
            raise ValueError("a penalised resolution gives its penalty, and only it does")
        return self


@router.post("/cases/{case_id}/assign", response_model=CaseView)
async def assign(
    case_id: UUID,
    body: AssignIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.assign(
            principal,
            case_id,
            expected,
            unit_id=body.unit_id,
            staff_id=body.staff_id,
            matter_code=body.matter_code,
        ),
    )


@router.post("/cases/{case_id}/reject", response_model=CaseView)
async def reject(
    case_id: UUID,
    body: ReasonIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.reject(principal, case_id, expected, reason=body.reason),
    )


@router.post("/cases/{case_id}/progress", response_model=CaseView)
async def progress(
    case_id: UUID,
    body: ProgressIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.progress(
            principal, case_id, expected, note=body.note, evidence=body.evidence, point=body.point
        ),
    )


@router.post("/cases/{case_id}/resolve", response_model=CaseView)
async def resolve(
    case_id: UUID,
    body: ResolveIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.resolve(
            principal,
            case_id,
            expected,
            resolution=body.resolution,
            note=body.note,
            rectification_due=body.rectification_due,
            evidence=body.evidence,
            penalty=body.penalty,
            point=body.point,
        ),
    )


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contacted_at: AwareDatetime = Field(description="when the unit contacted the citizen")
    method: ContactMethod = Field(description="phone, visit, sms or wechat")
    note: str | None = Field(default=None, min_length=1, max_length=500)


@router.post(
    "/cases/{case_id}/contact",
    response_model=CaseView,
    responses={422: {"description": "a contact time before the case was opened, or to come"}},
)
async def contact(
    case_id: UUID,
    body: ContactIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    """联系群众: the assigned unit records when and how it contacted the citizen; 响应率 counts
    a case whose citizen was first contacted by its first-response deadline."""
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.contact(
            principal,
            case_id,
            expected,
            contacted_at=body.contacted_at,
            method=body.method,
            note=body.note,
        ),
    )


@router.post("/cases/{case_id}/reopen", response_model=CaseView)
async def reopen(
    case_id: UUID,
    body: ReasonIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.reopen(principal, case_id, expected, reason=body.reason),
    )


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
    async with reading(runtime) as session:
        case = await find_case(session, principal, case_id)
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
            for link in await merged_tips(session, case_id)
        ]
        own = (await tip_texts(session, [case])).get(case.tip_id)
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
    expected = expected_version(if_match)
    async with changing(runtime) as cases:
        case, split_case_id = await cases.split(
            principal, case_id, expected, tip_id=body.tip_id, reason=body.reason
        )
    return SplitView(case=case_view(case, response), split_case_id=split_case_id)


def _register_plain_step(action: Action) -> None:
    """A step that needs no body: the event records only who took it, and when."""

    async def step(
        case_id: UUID,
        principal: CaseActor,
        runtime: RuntimeDep,
        response: Response,
        if_match: IfMatch = None,
    ) -> CaseView:
        return await change_case(
            runtime,
            if_match,
            response,
            lambda cases, expected: cases.step(principal, case_id, expected, action),
        )

    router.add_api_route(
        f"/cases/{{case_id}}/{action.value}",
        step,
        methods=["POST"],
        response_model=CaseView,
        name=action.value,
        summary=f"{action.value.capitalize()} a case",
    )


for _action in PLAIN_STEPS:
    _register_plain_step(_action)
