"""Dispatch's HTTP API beyond a single unit's lifecycle: the whistle (吹哨), the queues, the
county's admission decisions (准入) and the reference data in force (and its reload)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from uuid6 import uuid7

from contracts.cases import CaseStatus
from contracts.envelope import EventData, new_event
from contracts.events import CaseClosed
from contracts.topics import CASES
from reference.county import (
    ReferenceData,
    ReferenceDataError,
    Urgency,
    load_reference,
)
from services.dispatch.api import (
    ROLE_OF_ACTOR,
    AssignIn,
    CaseActor,
    CaseReader,
    CaseView,
    IfMatch,
    RuntimeDep,
    _case_to_act_on,
    _dispatchers_case,
    _expected_version,
    _view,
    assign_case,
    current_reference,
    local_today,
)
from services.dispatch.handlers import SOURCE
from services.dispatch.lifecycle import COUNTY
from services.dispatch.queries import (
    COUNTY_QUEUE,
    Suggestion,
    Waiting,
    admission_queue,
    open_cases,
    scoped_codes,
    summoned,
    township_queue,
    triage_queue,
)
from services.dispatch.routing import ADMISSION_QUEUE
from services.dispatch.whistles import WhistleFacts, judge, new_whistle
from services.runtime.auth import Principal, require_roles
from services.runtime.outbox import stage
from services.runtime.problems import Problem
from services.runtime.service import Runtime

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["coordination"])

QueueReader = Annotated[Principal, Depends(require_roles("dispatcher", "county_supervisor"))]
County = Annotated[Principal, Depends(require_roles("county_supervisor"))]
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
    expected = _expected_version(if_match)
    reference = current_reference(runtime)
    now = runtime.clock()
    async with runtime.transaction() as session:
        case = await _dispatchers_case(session, principal, case_id, expected, "Blowing the whistle")
        item = reference.items.get(case.matter_code or "")
        facts = WhistleFacts(
            status=CaseStatus(case.status),
            urgency=Urgency(case.urgency),
            matter=item,
            claimed=item is not None
            and item.code in reference.claims.get(case.township_code or "", frozenset()),
            reopens=case.reopens,
            summoned=await summoned(session, case.id),
        )
        departments = list(dict.fromkeys(body.departments))
        verdict = judge(
            facts, departments, body.reason_code, reference.whistle_rules, reference.departments
        )
        if not verdict.allowed:
            raise Problem(
                422,
                "Whistle not allowed",
                "；".join(r.reason for r in verdict.refusals),
                rules=[r.rule for r in verdict.refusals],
                refusals=[{"rule": r.rule, "reason": r.reason} for r in verdict.refusals],
            )
        case.version += 1
        case.updated_at = now
        record, blown = new_whistle(
            uuid7(),
            case,
            departments,
            body.reason_code,
            body.reason,
            verdict.rule,
            automatic=False,
            actor=principal.subject,
            actor_role="dispatcher",
            at=now,
        )
        session.add(record)
        stage(session, CASES, new_event(SOURCE, str(case.id), blown, now))
    return _view(case, response)


# ---------------------------------------------------------------- queues and lists


class SuggestionOut(BaseModel):
    matter_code: str
    name: str
    score: float
    keywords: list[str] = Field(description="the tip's words that matched the item")
    unit_id: str | None = Field(description="the unit routing would assign the item to")
    unit_name: str | None


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


def suggestions_out(proposed: Iterable[Suggestion]) -> list[SuggestionOut]:
    return [
        SuggestionOut(
            matter_code=s.matter_code,
            name=s.name,
            score=s.score,
            keywords=list(s.keywords),
            unit_id=s.unit_id,
            unit_name=s.unit_name,
        )
        for s in proposed
    ]


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
    township: Annotated[str | None, Query(description="a township code")] = None,
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
            current_reference(runtime),
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
            session, current_reference(runtime), principal, runtime.clock(), local_today(runtime)
        )
    return _waiting_out(rows)


@router.get("/cases", response_model=list[CaseView])
async def case_list(
    principal: CaseReader,
    runtime: RuntimeDep,
    township: Annotated[list[str] | None, Query(description="township code(s)")] = None,
    state: Annotated[list[CaseStatus] | None, Query(description="case state(s)")] = None,
    unit: Annotated[str | None, Query(description="lead or supporting unit")] = None,
    matter: Annotated[list[str] | None, Query(description="matter code(s)")] = None,
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
    model_config = ConfigDict(extra="forbid")
    decision: Literal["admit", "decline"]
    unit_id: str | None = Field(default=None, description="admit: the unit that acts")
    matter_code: str | None = Field(default=None, description="admit: the catalogue item")
    staff_id: str | None = None
    reason: str | None = Field(
        default=None, min_length=1, max_length=500, description="decline: told to the citizen"
    )

    @model_validator(mode="after")
    def _what_each_decision_needs(self) -> AdmissionIn:
        if self.decision == "admit" and not (self.unit_id and self.matter_code):
            raise ValueError("admitting needs unit_id and matter_code")
        if self.decision == "decline" and not self.reason:
            raise ValueError("declining needs the reason")
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
    """The county admits an out-of-list case (assigns it, rule ``admission``) or declines it
    (closes it with the reason)."""
    expected = _expected_version(if_match)
    reference = current_reference(runtime)
    now = runtime.clock()
    async with runtime.transaction() as session:
        case, actors = await _case_to_act_on(session, principal, case_id, expected)
        if (
            COUNTY not in actors
            or case.status != CaseStatus.TRIAGE
            or case.queue != ADMISSION_QUEUE
        ):
            raise Problem(409, "Conflict", "The case is not waiting for an admission decision.")
        case.version += 1
        case.updated_at = now
        step = case.step(principal.subject, ROLE_OF_ACTOR[COUNTY])
        data: EventData
        if body.decision == "admit":
            assert body.unit_id is not None
            case.status = CaseStatus.ASSIGNED.value
            assignment = AssignIn(
                unit_id=body.unit_id, staff_id=body.staff_id, matter_code=body.matter_code
            )
            data = await assign_case(
                runtime, reference, session, case, step, principal, assignment, "admission"
            )
        else:
            case.status, case.queue = CaseStatus.CLOSED.value, None
            case.routing = {
                **case.routing,
                "rule": "admission_declined",
                "explanation": [*case.routing.get("explanation", []), f"不予准入：{body.reason}"],
            }
            data = CaseClosed(**step, reason=body.reason)
        stage(session, CASES, new_event(SOURCE, str(case.id), data, now))
    return _view(case, response)


# ---------------------------------------------------------------- reference data


class ReferenceView(BaseModel):
    version: str = Field(description="the version every routing decision records")
    catalogue_version: str
    whistle_rules_version: str | None
    whistle_rules_placeholder: bool | None
    townships: int
    units: int
    items: int


def _describe(reference: ReferenceData) -> ReferenceView:
    rules = reference.whistle_rules
    return ReferenceView(
        version=reference.version,
        catalogue_version=reference.catalogue.version,
        whistle_rules_version=rules.version if rules else None,
        whistle_rules_placeholder=rules.placeholder if rules else None,
        townships=len(reference.townships),
        units=len(reference.units),
        items=len(reference.items),
    )


@router.get("/reference", response_model=ReferenceView)
async def reference_in_force(principal: CaseReader, runtime: RuntimeDep) -> ReferenceView:
    return _describe(current_reference(runtime))


def _load_prepared(runtime: Runtime) -> ReferenceData:
    loaded = load_reference(runtime.settings.config_dir)
    loaded.prepare()
    return loaded


async def reload_reference(runtime: Runtime) -> ReferenceData:
    """Load and validate deploy/config into a new version and put it in force in one step;
    on ReferenceDataError the version in force stays. One reload at a time."""
    lock: asyncio.Lock = runtime.state.setdefault("reference_reload", asyncio.Lock())
    async with lock:
        # Parsing and building jieba's dictionary take a while: off the event loop, so that
        # tips keep being routed with the old version until the new one is whole.
        loaded = await asyncio.to_thread(_load_prepared, runtime)
        runtime.state["reference"] = loaded
    log.info("reference data %s in force", loaded.version)
    return loaded


@router.post("/reference/reload", response_model=ReferenceView)
async def reload(principal: ReferenceKeeper, runtime: RuntimeDep) -> ReferenceView:
    try:
        loaded = await reload_reference(runtime)
    except ReferenceDataError as exc:
        raise Problem(
            422,
            "Invalid reference data",
            f"Not reloaded; version {current_reference(runtime).version} stays in force.",
            reasons=exc.reasons,
            version_in_force=current_reference(runtime).version,
        ) from exc
    return _describe(loaded)


async def reload_on_sighup(runtime: Runtime) -> None:
    """``kill -HUP`` reloads the reference data, like POST /v1/reference/reload."""
    loop = asyncio.get_running_loop()
    wanted = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, wanted.set)
    try:
        while True:
            await wanted.wait()
            wanted.clear()
            try:
                await reload_reference(runtime)
            except ReferenceDataError as exc:
                log.error(
                    "reference data not reloaded, %s stays in force: %s",
                    current_reference(runtime).version,
                    "; ".join(exc.reasons),
                )
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
