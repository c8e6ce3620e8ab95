"""The JSON the dispatcher console reads: its caller's scope, queues, case lists and a case's
page. Which cases a caller sees, and the classifier's suggestions, come from queries.py — the
same as the JSON API's; what they may do now comes from the case service (cases.py); this
module adds what a person reads (names, deadline colours, the timeline). The console acts
through the endpoints of api.py and coordination_api.py."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from contracts.cases import CaseStatus
from contracts.events import Penalty
from reference.county import Code, CountySet, ReferenceData
from services.dispatch.cases import (
    ASSISTANCE,
    find_case,
    may_ask_assistance,
    permitted_actions,
)
from services.dispatch.deadline_colour import (
    LEGAL_REVIEW_CLOCK,
    ClockKey,
    Colour,
    case_colour,
    clock_colour,
)
from services.dispatch.dependencies import (
    AdmissionReader,
    ChosenCounty,
    County,
    LegalReviewReader,
    chosen_reference,
    reading,
)
from services.dispatch.enforcement import describe_penalty
from services.dispatch.labels import for_console
from services.dispatch.models import Case, CaseClock
from services.dispatch.queries import (
    Waiting,
    admission_queue,
    case_clocks,
    legal_review_queue,
    open_cases,
    open_load,
    pending_proposals,
    provisional_case_clocks,
    queues_of,
    readers_counties,
    reference_for,
    scoped_codes,
    suggestions,
    timeline,
    tip_texts,
    triage_queue,
)
from services.dispatch.routing import ADMISSION_APPROVAL_QUEUE
from services.dispatch.views import CaseView, SuggestionOut, case_view, suggestions_out
from services.dispatch.wiring import current_counties, local_today
from services.runtime.auth import Principal, require_roles
from services.runtime.service import RuntimeDep
from services.runtime.settings import Settings

router = APIRouter(prefix="/v1/console", tags=["console"])

ConsoleUser = Annotated[
    Principal,
    Depends(
        require_roles(
            "dispatcher", "unit_member", "county_supervisor", "county_government", "legal_reviewer"
        )
    ),
]

# Without a state filter the case list shows what is being worked: triage has its own view.
WORKED = [s.value for s in CaseStatus if s not in (CaseStatus.TRIAGE, CaseStatus.CLOSED)]


class Named(BaseModel):
    code: str
    name: str


class UnitRef(BaseModel):
    id: str
    name: str
    township: str | None


class WhistleReasonRef(BaseModel):
    code: str
    label: str
    description: str


class Me(BaseModel):
    subject: str
    roles: list[str]
    county: Named = Field(
        description="the county whose townships, units, matters and departments follow"
    )
    counties: list[Named] = Field(
        description="the counties the caller reads, each of which ?county= may choose"
    )
    townships: list[Named]
    units: list[UnitRef]
    matters: list[Named]
    departments: list[Named]
    whistle_reasons: list[WhistleReasonRef]
    labels: dict[str, dict[str, str]] = Field(
        description="the Chinese words for codes: urgency, status, authority (code → word)"
    )
    meeting_page: str = Field(
        description="escalation's township meeting page (联席会议), which a case page links to: "
        "absolute, or ':<port>/township' on the console's own host"
    )


class ClockView(BaseModel):
    kind: str
    round: int
    warn_at: datetime
    due_at: datetime
    stopped_at: datetime | None
    on_time: bool | None
    colour: Colour | None
    provisional: bool = Field(
        description="counted Monday to Friday: the business calendar lacks a year it reaches "
        "into (暂定); counted again once the year is added"
    )


class CaseRow(BaseModel):
    id: UUID
    county: str = Field(description="the case's county, whose reference data names it")
    status: str
    queue: str | None
    matter_code: str | None
    matter_name: str | None
    township_code: str | None
    township_name: str | None
    unit_id: str | None
    unit_name: str | None
    urgency: str
    rejections: int
    version: int
    text: str | None
    colour: Colour | None
    due_at: datetime | None
    provisional: bool = Field(description="a running clock of the case is provisional (暂定)")
    created_at: datetime
    updated_at: datetime


class TriageRow(CaseRow):
    reason: str | None
    suggestions: list[SuggestionOut]


class TimelineItem(BaseModel):
    type: str
    time: datetime
    data: dict[str, Any]


class CasePage(BaseModel):
    case: CaseView
    text: str | None
    address: str | None
    channel: str | None
    matter_name: str | None
    unit_name: str | None
    colour: Colour | None
    provisional: bool = Field(description="a running clock of the case is provisional (暂定)")
    clocks: list[ClockView]
    suggestions: list[SuggestionOut]
    assignable_units: list[UnitRef]
    responsible_departments: list[str]
    actions: list[str]
    timeline: list[TimelineItem]


@router.get("/me", response_model=Me)
async def me(
    principal: ConsoleUser,
    runtime: RuntimeDep,
    county: ChosenCounty = None,
) -> Me:
    """Who the caller is, and what the console's filters and forms offer them (from the
    reference data of their county, or of the county a city token chose; the console asks
    for each case's county's when its forms are about a case)."""
    reference = chosen_reference(runtime, principal, county)
    everywhere = bool(
        principal.roles & {"county_supervisor", "county_government", "legal_reviewer"}
    )
    townships = scoped_codes(principal, "township") if "dispatcher" in principal.roles else set()
    unit_codes = scoped_codes(principal, "unit") if "unit_member" in principal.roles else set()
    units = [
        UnitRef(id=u.id, name=u.name, township=u.township)
        for u in reference.units.values()
        if everywhere
        or "*" in townships
        or u.township in townships
        or "*" in unit_codes
        or u.id in unit_codes
    ]
    rules = reference.whistle_rules
    return Me(
        subject=principal.subject,
        roles=sorted(principal.roles),
        county=Named(code=reference.county.code, name=reference.county.name),
        counties=[
            Named(code=c.county.code, name=c.county.name)
            for c in readers_counties(current_counties(runtime), principal)
        ],
        townships=[
            Named(code=t.code, name=t.name)
            for t in reference.county.townships
            if everywhere or "*" in townships or t.code in townships
        ],
        units=units,
        matters=[Named(code=i.code, name=i.name) for i in reference.catalogue.items],
        departments=[Named(code=d.code, name=d.name) for d in reference.departments.values()],
        whistle_reasons=[
            WhistleReasonRef(code=r.code, label=r.label, description=r.description)
            for r in (rules.reasons if rules else [])
        ],
        labels=for_console(),
        meeting_page=_meeting_page(runtime.settings),
    )


def _meeting_page(settings: Settings) -> str:
    if settings.escalation_url:
        return settings.escalation_url.rstrip("/") + "/township"
    return f":{settings.escalation_port}/township"


def _row(
    reference: ReferenceData,
    case: Case,
    text: str | None,
    clocks: list[CaseClock],
    now: datetime,
    provisional: Collection[ClockKey] = (),
) -> dict[str, Any]:
    """What a list shows of a case, named from ``reference``: its own county's."""
    item = reference.items.get(case.matter_code or "")
    unit = reference.units.get(case.unit_id or "")
    township = reference.townships.get(case.township_code or "")
    running = [c.due_at for c in clocks if c.stopped_at is None]
    return {
        "id": case.id,
        "county": case.county,
        "status": case.status,
        "queue": case.queue,
        "matter_code": case.matter_code,
        "matter_name": item.name if item else None,
        "township_code": case.township_code,
        "township_name": township.name if township else None,
        "unit_id": case.unit_id,
        "unit_name": unit.name if unit else None,
        "urgency": case.urgency,
        "rejections": case.rejections,
        "version": case.version,
        "text": text,
        "colour": case_colour(clocks, now),
        "due_at": min(running) if running else None,
        "provisional": any(
            (c.case_id, c.kind, c.round) in provisional for c in clocks if c.stopped_at is None
        ),
        "created_at": case.created_at,
        "updated_at": case.updated_at,
    }


def _triage_rows(
    counties: CountySet, principal: Principal, rows: list[Waiting], now: datetime
) -> list[TriageRow]:
    return [
        TriageRow(
            **_row(reference_for(counties, principal, case=w.case), w.case, w.text, [], now),
            reason=w.reason,
            suggestions=suggestions_out(w.suggestions),
        )
        for w in rows
    ]


@router.get("/triage", response_model=list[TriageRow])
async def triage(principal: ConsoleUser, runtime: RuntimeDep) -> list[TriageRow]:
    """The triage queues the caller works (a dispatcher: their townships'; the county: its own,
    with the cases waiting for arbitration), oldest first."""
    counties = current_counties(runtime)
    now = runtime.clock()
    async with runtime.sessions() as session:
        rows = await triage_queue(
            session,
            counties,
            principal,
            queues_of(principal, counties),
            now,
            local_today(runtime),
        )
    return _triage_rows(counties, principal, rows, now)


@router.get("/admission", response_model=list[TriageRow])
async def admission(principal: County, runtime: RuntimeDep) -> list[TriageRow]:
    """Out-of-list cases waiting for the county's admission decision (准入), oldest first."""
    counties = current_counties(runtime)
    now = runtime.clock()
    async with runtime.sessions() as session:
        rows = await admission_queue(session, counties, principal, now, local_today(runtime))
    return _triage_rows(counties, principal, rows, now)


class ProposalRow(BaseModel):
    """An admission proposal (准入) as the county government reads it."""

    matter_code: str
    matter_name: str | None
    unit_id: str
    unit_name: str | None
    approving_body: str
    document_no: str
    reason: str
    proposed_by: str
    proposed_at: datetime


class ApprovalRow(TriageRow):
    proposal: ProposalRow | None


@router.get("/approval", response_model=list[ApprovalRow])
async def approval(principal: AdmissionReader, runtime: RuntimeDep) -> list[ApprovalRow]:
    """Admission proposals waiting for the county government (待批准), oldest first."""
    counties = current_counties(runtime)
    now = runtime.clock()
    async with runtime.sessions() as session:
        rows = await admission_queue(
            session, counties, principal, now, local_today(runtime), ADMISSION_APPROVAL_QUEUE
        )
        proposals = await pending_proposals(session, [w.case.id for w in rows])
    out = []
    for waiting, row in zip(rows, _triage_rows(counties, principal, rows, now), strict=True):
        reference = reference_for(counties, principal, case=waiting.case)
        proposal = proposals.get(row.id)
        item = reference.items.get(proposal.matter_code) if proposal else None
        unit = reference.units.get(proposal.unit_id) if proposal else None
        out.append(
            ApprovalRow(
                **row.model_dump(),
                proposal=ProposalRow(
                    **proposal.model_dump(),
                    matter_name=item.name if item else None,
                    unit_name=unit.name if unit else None,
                )
                if proposal
                else None,
            )
        )
    return out


class ReviewRow(CaseRow):
    """A penalty decision waiting for legal review (法制审核), as the reviewer reads it."""

    review_id: UUID
    penalty: Penalty
    penalty_words: str = Field(description="the penalty in words: 罚款20000元")
    note: str
    major_decisions: list[str] = Field(description="the 重大执法决定 entries it matches")
    acting_in_name_of: str | None = Field(description="in whose name it would be decided")
    legal_basis: str | None
    requested_by: str
    requested_at: datetime
    review_due_at: datetime | None = Field(
        description="when the review is due (法制审核期限; escalation's legal_review clock)"
    )
    review_colour: Colour | None = Field(
        description="the review clock's colour: red once it is overdue (已超期)"
    )


def _review_clock(clocks: list[CaseClock]) -> CaseClock | None:
    """The running round of the case's legal review clock, if escalation announced it yet."""
    running = [c for c in clocks if c.kind == LEGAL_REVIEW_CLOCK and c.stopped_at is None]
    return max(running, key=lambda c: c.round) if running else None


@router.get("/legal-review", response_model=list[ReviewRow])
async def legal_review(principal: LegalReviewReader, runtime: RuntimeDep) -> list[ReviewRow]:
    """Penalty decisions waiting for legal review (待法制审核), longest waiting first."""
    counties = current_counties(runtime)
    now = runtime.clock()
    async with runtime.sessions() as session:
        rows = await legal_review_queue(session, principal)
        cases = [case for case, _ in rows]
        texts = await tip_texts(session, cases)
        clocks = await case_clocks(session, [c.id for c in cases])
    out = []
    for case, review in rows:
        penalty = Penalty.model_validate(review.penalty)
        acting = (case.acting or {}).get("acting_in_name_of") or {}
        text = texts.get(case.tip_id)
        review_clock = _review_clock(clocks.get(case.id, []))
        out.append(
            ReviewRow(
                **_row(
                    reference_for(counties, principal, case=case),
                    case,
                    text.text if text else None,
                    clocks.get(case.id, []),
                    now,
                ),
                review_id=review.id,
                penalty=penalty,
                penalty_words=describe_penalty(penalty),
                note=review.note,
                major_decisions=review.major_decisions,
                acting_in_name_of=acting.get("name"),
                legal_basis=(case.acting or {}).get("legal_basis"),
                requested_by=review.requested_by,
                requested_at=review.requested_at,
                review_due_at=review_clock.due_at if review_clock else None,
                review_colour=clock_colour(review_clock, now) if review_clock else None,
            )
        )
    return out


@router.get("/cases", response_model=list[CaseRow])
async def case_list(
    principal: ConsoleUser,
    runtime: RuntimeDep,
    status: Annotated[CaseStatus | None, Query(description="only this state")] = None,
    unit_id: Annotated[Code | None, Query(description="only this lead or supporting unit")] = None,
    matter_code: Annotated[Code | None, Query(description="only this matter")] = None,
) -> list[CaseRow]:
    """Open cases in the caller's scope, most recently changed first, with their deadline
    colour: without a state, those past triage (triage has its own view)."""
    counties = current_counties(runtime)
    now = runtime.clock()
    async with runtime.sessions() as session:
        cases = await open_cases(
            session,
            principal,
            statuses=[status.value] if status else WORKED,
            unit=unit_id,
            matters=[matter_code] if matter_code else (),
        )
        texts = await tip_texts(session, cases)
        clocks = await case_clocks(session, [c.id for c in cases])
        provisional = await provisional_case_clocks(session, [c.id for c in cases])
    return [
        CaseRow(
            **_row(
                reference_for(counties, principal, case=c),
                c,
                texts[c.tip_id].text if c.tip_id in texts else None,
                clocks.get(c.id, []),
                now,
                provisional,
            )
        )
        for c in cases
    ]


@router.get("/cases/{case_id}", response_model=CasePage)
async def case_page(
    case_id: UUID, principal: ConsoleUser, runtime: RuntimeDep, response: Response
) -> CasePage:
    """One case: the tip, where it stands, its clocks and timeline, what the caller may do."""
    counties = current_counties(runtime)
    now = runtime.clock()
    async with reading(runtime) as session:
        case = await find_case(session, principal, case_id)
        text = (await tip_texts(session, [case])).get(case.tip_id)
        clocks = (await case_clocks(session, [case.id])).get(case.id, [])
        provisional = await provisional_case_clocks(session, [case.id])
        events = await timeline(session, case.id)
        waiting = case.status in (CaseStatus.TRIAGE, CaseStatus.ARBITRATION)
        load = await open_load(session) if waiting else {}
    reference = reference_for(counties, principal, case=case)
    row = _row(reference, case, text.text if text else None, clocks, now, provisional)
    if "county_supervisor" in principal.roles:
        assignable = list(reference.units.values())
    else:
        assignable = reference.units_of_township(case.township_code or "")
    item = reference.items.get(case.matter_code or "")
    proposed = (
        suggestions(row["text"], reference, case, load, local_today(runtime)) if waiting else ()
    )
    return CasePage(
        case=case_view(case, response),
        text=row["text"],
        address=text.address if text else None,
        channel=text.channel if text else None,
        matter_name=row["matter_name"],
        unit_name=row["unit_name"],
        colour=row["colour"],
        provisional=row["provisional"],
        clocks=[
            ClockView(
                kind=c.kind,
                round=c.round,
                warn_at=c.warn_at,
                due_at=c.due_at,
                stopped_at=c.stopped_at,
                on_time=c.on_time,
                colour=clock_colour(c, now),
                provisional=(c.case_id, c.kind, c.round) in provisional,
            )
            for c in clocks
        ],
        suggestions=suggestions_out(proposed),
        assignable_units=[UnitRef(id=u.id, name=u.name, township=u.township) for u in assignable],
        responsible_departments=(
            [item.lead_department, *item.supporting_departments] if item else []
        ),
        actions=[
            *permitted_actions(principal, case),
            *([ASSISTANCE] if may_ask_assistance(principal, case, reference) else []),
        ],
        timeline=[TimelineItem(type=e.type, time=e.time, data=e.data) for e in events],
    )
