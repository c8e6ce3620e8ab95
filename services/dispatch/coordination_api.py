"""Dispatch's HTTP API beyond a single unit's lifecycle: the whistle (吹哨), the queues, the
county's admission decisions (准入), legal review of major penalty decisions (法制审核) and the
reference data in force (and its reload).

A thin edge: changes go through the case service (cases.py), whose refusals are answered as
problems (problems.py); lists come from queries.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.cases import CaseStatus
from contracts.events import Penalty
from reference.county import Code, ReferenceData, ReferenceDataError
from services.dispatch.cases import CaseService
from services.dispatch.classifier import TriageModel
from services.dispatch.dependencies import (
    AdmissionReader,
    CaseActor,
    CaseReader,
    ChosenCounty,
    County,
    Government,
    IfMatch,
    LegalReviewer,
    LegalReviewReader,
    change_case,
    chosen_reference,
)
from services.dispatch.models import AdmissionDecision, Case, LegalReview
from services.dispatch.queries import (
    COUNTY_QUEUE,
    Waiting,
    admission_queue,
    legal_review_queue,
    open_cases,
    pending_proposals,
    scoped_codes,
    township_queue,
    triage_queue,
)
from services.dispatch.routing import ADMISSION_APPROVAL_QUEUE
from services.dispatch.views import CaseView, SuggestionOut, suggestions_out
from services.dispatch.wiring import (
    county_model,
    current_counties,
    current_reference,
    local_today,
    reload_reference,
)
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import Runtime, RuntimeDep

router = APIRouter(prefix="/v1", tags=["coordination"])

QueueReader = Annotated[Principal, Depends(require_roles("dispatcher", "county_supervisor"))]
ReferenceKeeper = Annotated[Principal, Depends(require_roles("admin", "county_supervisor"))]


# ---------------------------------------------------------------- 吹哨


class WhistleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    departments: list[str] = Field(min_length=1, max_length=15, description="department codes")
    reason_code: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)


@router.post("/cases/{case_id}/whistle", response_model=CaseView)
async def whistle(
    case_id: UUID,
    body: WhistleIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    """The township's dispatcher summons county departments, if the county's rules allow it."""
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.whistle(
            principal,
            case_id,
            expected,
            departments=body.departments,
            reason_code=body.reason_code,
            reason=body.reason,
        ),
    )


# ---------------------------------------------------------------- 协助


class AssistanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(min_length=1, max_length=2000, description="what the township is asked to do")
    unit_id: Code | None = Field(
        default=None, description="a unit of the case's township; else its enforcement team"
    )


@router.post("/cases/{case_id}/assistance", response_model=CaseView)
async def request_assistance(
    case_id: UUID,
    body: AssistanceIn,
    principal: CaseActor,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    """The county department's unit leading an assist matter asks the township to assist."""
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.request_assistance(
            principal, case_id, expected, task=body.task, unit_id=body.unit_id
        ),
    )


# ---------------------------------------------------------------- queues and lists


class WaitingOut(BaseModel):
    case_id: UUID
    tip_id: UUID
    status: str
    queue: str | None
    township_code: str | None
    village_code: str | None
    matter_code: str | None
    urgency: str
    version: int
    reason: str | None = Field(description="why it waits (the routing explanation's last line)")
    text: str | None = Field(description="the citizen's words, when dispatch kept them")
    age_seconds: int
    created_at: datetime
    suggestions: list[SuggestionOut]


def _waiting_out(rows: list[Waiting]) -> list[WaitingOut]:
    return [
        WaitingOut(
            case_id=w.case.id,
            tip_id=w.case.tip_id,
            status=w.case.status,
            queue=w.case.queue,
            township_code=w.case.township_code,
            village_code=w.case.village_code,
            matter_code=w.case.matter_code,
            urgency=w.case.urgency,
            version=w.case.version,
            reason=w.reason,
            text=w.text,
            age_seconds=w.age_seconds,
            created_at=w.case.created_at,
            suggestions=suggestions_out(w.suggestions),
        )
        for w in rows
    ]


@router.get("/queues/triage", response_model=list[WaitingOut])
async def triage_list(
    principal: QueueReader,
    runtime: RuntimeDep,
    township: Annotated[Code | None, Query(description="a township code")] = None,
) -> list[WaitingOut]:
    """A township's triage queue (a dispatcher: their own), or without ``township`` the
    county's (county supervisor), oldest first, with the classifier's top suggestions."""
    if "county_supervisor" in principal.roles:
        queue = township_queue(township) if township else COUNTY_QUEUE
    else:
        if township is None:
            own = scoped_codes(principal, "township") - {"*"}
            if len(own) != 1:
                raise Problem(422, "Township needed", "Say which township: ?township=<code>.")
            township = own.pop()
        if not principal.may_act_on("township", township):
            raise Problem(403, "Forbidden", f"You do not dispatch for township {township}.")
        queue = township_queue(township)
    async with runtime.sessions() as session:
        rows = await triage_queue(
            session,
            current_counties(runtime),
            principal,
            [queue],
            runtime.clock(),
            local_today(runtime),
        )
    return _waiting_out(rows)


@router.get("/queues/admission", response_model=list[WaitingOut])
async def admission_list(principal: County, runtime: RuntimeDep) -> list[WaitingOut]:
    """Out-of-list cases waiting for the county's admission decision (准入), oldest first."""
    async with runtime.sessions() as session:
        rows = await admission_queue(
            session, current_counties(runtime), principal, runtime.clock(), local_today(runtime)
        )
    return _waiting_out(rows)


@router.get("/cases", response_model=list[CaseView])
async def case_list(
    principal: CaseReader,
    runtime: RuntimeDep,
    township: Annotated[list[Code] | None, Query(description="township code(s)")] = None,
    state: Annotated[list[CaseStatus] | None, Query(description="case state(s)")] = None,
    unit: Annotated[Code | None, Query(description="lead or supporting unit")] = None,
    matter: Annotated[list[Code] | None, Query(description="matter code(s)")] = None,
) -> list[CaseView]:
    """Open cases the caller may see, most recently changed first."""
    async with runtime.sessions() as session:
        cases = await open_cases(
            session,
            principal,
            townships=township or (),
            statuses=[s.value for s in state or ()],
            unit=unit,
            matters=matter or (),
        )
    return [CaseView.model_validate(c, from_attributes=True) for c in cases]


# ---------------------------------------------------------------- 准入


class AdmissionIn(BaseModel):
    """The county supervisor's step on a case waiting for admission (待准入): propose that the
    township carry the matter (the county government approves or rejects), or decline it."""

    model_config = ConfigDict(extra="forbid")
    decision: Literal["propose", "decline"]
    unit_id: str | None = Field(default=None, description="propose: the unit that would act")
    matter_code: str | None = Field(default=None, description="propose: the catalogue item")
    staff_id: str | None = None
    approving_body: str | None = Field(
        default=None, min_length=1, max_length=100, description="propose: 批准机关"
    )
    document_no: str | None = Field(
        default=None, min_length=1, max_length=100, description="propose: 批准文号"
    )
    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="propose: why the township should carry it; decline: told to the citizen",
    )

    @model_validator(mode="after")
    def _what_each_decision_needs(self) -> AdmissionIn:
        if self.decision == "propose" and not (
            self.unit_id and self.matter_code and self.approving_body and self.document_no
        ):
            raise ValueError(
                "proposing needs unit_id, matter_code, approving_body, document_no and reason"
            )
        if not self.reason:
            raise ValueError("the reason is needed")
        return self


@router.post("/cases/{case_id}/admission", response_model=CaseView)
async def decide_admission(
    case_id: UUID,
    body: AdmissionIn,
    principal: County,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    """The county supervisor proposes admitting an out-of-list case (it then waits for the
    county government) or declines it (closes it with the reason)."""

    async def decide(cases: CaseService, expected: int) -> Case:
        assert body.reason is not None
        if body.decision == "propose":
            assert body.unit_id and body.matter_code and body.approving_body and body.document_no
            return await cases.propose_admission(
                principal,
                case_id,
                expected,
                matter_code=body.matter_code,
                unit_id=body.unit_id,
                staff_id=body.staff_id,
                approving_body=body.approving_body,
                document_no=body.document_no,
                reason=body.reason,
            )
        return await cases.decline(principal, case_id, expected, reason=body.reason)

    return await change_case(runtime, if_match, response, decide)


class SecondStepIn(BaseModel):
    """A second role's decision on what another proposed: approve it, or send it back saying
    why (the opinion)."""

    model_config = ConfigDict(extra="forbid")
    decision: str
    opinion: str | None = Field(
        default=None, min_length=1, max_length=1000, description="意见; required to send it back"
    )

    @property
    def approved(self) -> bool:
        return self.decision == "approve"

    @model_validator(mode="after")
    def _sending_back_says_why(self) -> SecondStepIn:
        if not self.approved and not self.opinion:
            raise ValueError(f"{self.decision} needs the opinion")
        return self


class ApprovalIn(SecondStepIn):
    decision: Literal["approve", "reject"]  # 审批意见 with a rejection


@router.post("/cases/{case_id}/admission/approval", response_model=CaseView)
async def approve_admission(
    case_id: UUID,
    body: ApprovalIn,
    principal: Government,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    """The county government approves the admission proposal (the case is assigned to the
    proposed unit) or rejects it (the case waits for the county supervisor again)."""
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.decide_admission(
            principal,
            case_id,
            expected,
            approve=body.approved,
            opinion=body.opinion,
        ),
    )


class ProposalOut(BaseModel):
    """An admission proposal waiting for the county government."""

    proposal_id: UUID
    matter_code: str
    unit_id: str
    staff_id: str | None
    approving_body: str
    document_no: str
    reason: str
    proposed_by: str
    proposed_at: datetime

    @classmethod
    def of(cls, decision: AdmissionDecision) -> ProposalOut:
        return cls(proposal_id=decision.id, **decision.model_dump(exclude={"id"}))


class ApprovalWaitingOut(WaitingOut):
    proposal: ProposalOut | None


@router.get("/queues/admission-approval", response_model=list[ApprovalWaitingOut])
async def approval_list(
    principal: AdmissionReader, runtime: RuntimeDep
) -> list[ApprovalWaitingOut]:
    """Admission proposals waiting for the county government's approval (待批准), oldest first."""
    async with runtime.sessions() as session:
        rows = await admission_queue(
            session,
            current_counties(runtime),
            principal,
            runtime.clock(),
            local_today(runtime),
            ADMISSION_APPROVAL_QUEUE,
        )
        proposals = await pending_proposals(session, [w.case.id for w in rows])
    return [
        ApprovalWaitingOut(
            **waiting.model_dump(),
            proposal=ProposalOut.of(proposals[waiting.case_id])
            if waiting.case_id in proposals
            else None,
        )
        for waiting in _waiting_out(rows)
    ]


# ---------------------------------------------------------------- 法制审核


class LegalReviewIn(SecondStepIn):
    decision: Literal["approve", "return"]  # 审核意见 with a return


@router.post("/cases/{case_id}/legal-review", response_model=CaseView)
async def decide_legal_review(
    case_id: UUID,
    body: LegalReviewIn,
    principal: LegalReviewer,
    runtime: RuntimeDep,
    response: Response,
    if_match: IfMatch = None,
) -> CaseView:
    """A legal reviewer approves the penalty decision waiting on the case (it takes effect: the
    case is resolved) or returns it with an opinion (the case is in progress again)."""
    return await change_case(
        runtime,
        if_match,
        response,
        lambda cases, expected: cases.decide_legal_review(
            principal,
            case_id,
            expected,
            approve=body.approved,
            opinion=body.opinion,
        ),
    )


class ReviewOut(BaseModel):
    """A penalty decision waiting for legal review, and why it must wait."""

    review_id: UUID
    note: str
    penalty: Penalty
    evidence: list[str]
    major_decisions: list[str] = Field(description="the 重大执法决定 entries it matches")
    requested_by: str
    requested_at: datetime

    @classmethod
    def of(cls, review: LegalReview) -> ReviewOut:
        return cls(
            review_id=review.id,
            **review.model_dump(
                include={
                    "note",
                    "penalty",
                    "evidence",
                    "major_decisions",
                    "requested_by",
                    "requested_at",
                }
            ),
        )


class ReviewWaitingOut(BaseModel):
    case: CaseView
    review: ReviewOut


@router.get("/queues/legal-review", response_model=list[ReviewWaitingOut])
async def legal_review_list(
    principal: LegalReviewReader, runtime: RuntimeDep
) -> list[ReviewWaitingOut]:
    """Penalty decisions waiting for legal review (待法制审核), longest waiting first."""
    async with runtime.sessions() as session:
        rows = await legal_review_queue(session, principal)
    return [
        ReviewWaitingOut(
            case=CaseView.model_validate(case, from_attributes=True), review=ReviewOut.of(review)
        )
        for case, review in rows
    ]


# ---------------------------------------------------------------- reference data


class ReferenceView(BaseModel):
    county: str = Field(description="the county's division code (行政区划代码)")
    county_name: str
    version: str = Field(description="the version every routing decision records")
    catalogue_version: str
    whistle_rules_version: str | None
    whistle_rules_placeholder: bool | None
    townships: int
    units: int
    items: int
    triage_model_version: str | None = Field(
        default=None, description="the triage model every classification names; null: keywords only"
    )
    triage_model_examples: int | None = None


def _describe(reference: ReferenceData, model: TriageModel | None) -> ReferenceView:
    rules = reference.whistle_rules
    return ReferenceView(
        county=reference.county.code,
        county_name=reference.county.name,
        triage_model_version=model.version if model else None,
        triage_model_examples=model.examples if model else None,
        version=reference.version,
        catalogue_version=reference.catalogue.version,
        whistle_rules_version=rules.version if rules else None,
        whistle_rules_placeholder=rules.placeholder if rules else None,
        townships=len(reference.townships),
        units=len(reference.units),
        items=len(reference.items),
    )


def _in_force(runtime: Runtime, principal: Principal, county: str | None) -> ReferenceView:
    """The reference data in force of the caller's county (or the one a city token chose)."""
    reference = chosen_reference(runtime, principal, county)
    return _describe(reference, county_model(runtime, reference))


@router.get("/reference", response_model=ReferenceView)
async def reference_in_force(
    principal: CaseReader, runtime: RuntimeDep, county: ChosenCounty = None
) -> ReferenceView:
    """The reference data in force of the caller's county: the one county their token names,
    or for a city token (``county:*``) the one it chooses (default: the default county)."""
    return _in_force(runtime, principal, county)


@router.post("/reference/reload", response_model=ReferenceView)
async def reload(principal: ReferenceKeeper, runtime: RuntimeDep) -> ReferenceView:
    """Reload every county's reference data; answers with the caller's county's."""
    try:
        await reload_reference(runtime)
    except ReferenceDataError as exc:
        raise Problem(
            422,
            "Invalid reference data",
            f"Not reloaded; version {current_reference(runtime).version} stays in force.",
            reasons=exc.reasons,
            version_in_force=current_reference(runtime).version,
        ) from exc
    return _in_force(runtime, principal, None)
