"""The joint meeting's HTTP API (联席会议) and the township's meeting page.

A township leader (role ``township_leader``, scope ``township:<code>``) convenes a meeting on
a case of the township or on its overdue whistles, records that it sat (attendance, minutes)
and its decisions. The leader, not the command centre's dispatcher: the meeting is the
township government's ("由镇政府…参加的联席会议"), and its decisions bind county departments
and township units to due dates — as the assessment opinion of seconded staff (考核) is the
leader's; the dispatcher blows the routine whistles and reads the meetings.

The owner of a decision reports it done: a county department for its own (``county_department``
with ``dept:<code>``, here or from its own system over Kafka), a unit of the township for its
own through dispatch (``unit_member`` with ``unit:<id>``, ``services/dispatch/decision_api.py``),
which passes it on as ``whistle.meeting.decision_reported``. Who reads what: the county
(``county_supervisor``, ``auditor``) every meeting; a township's leader and dispatcher its
own; a department the meetings it was summoned to; a unit member the meetings with a decision
its unit owns — one SQL condition (:func:`_readable`), for the list and each meeting. Another's
meeting reads as missing (404). All within the token's counties, for writes as for reads: a
leader cannot convene on, record or decide for another county's meeting, nor a department
report another county's decision done (404; tenancy, docs/scale.md). Rules: ``meetings.py``;
recording: ``meeting_service.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, Uuid, cast, exists, false, or_, select, true
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.events import MeetingDecisionDone, MeetingDecisionRecorded, MeetingHeld, Sha256
from reference.county import Code, CountySet
from services.escalation.calendar_watch import current_calendar
from services.escalation.counties import of_readers_counties
from services.escalation.meeting_service import (
    Convening,
    Deciding,
    convene,
    decide,
    hold,
    report_done,
)
from services.escalation.meetings import MeetingRefused, OwnerKind, Refusal
from services.escalation.models import CaseDeadline, Meeting, MeetingDecision
from services.escalation.policies import PolicyBook
from services.runtime import pages
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import Runtime, RuntimeDep

router = APIRouter(prefix="/v1", tags=["meetings"])
Leader = Annotated[Principal, Depends(require_roles("township_leader"))]
# A unit of the township reports its decisions through dispatch, as it acts on its cases.
Owner = Annotated[Principal, Depends(require_roles("county_department"))]
Reader = Annotated[
    Principal,
    Depends(
        require_roles(
            "township_leader",
            "dispatcher",
            "county_department",
            "unit_member",
            "county_supervisor",
            "auditor",
        )
    ),
]

PROBLEM = "https://whistle.example/problems/"
COUNTY_READERS = frozenset({"county_supervisor", "auditor", "admin"})
STATUS = {"not_found": 404, "conflict": 409, "invalid": 422, "forbidden": 403}
TITLE = {
    "not_found": "未找到",
    "conflict": "状态冲突",
    "invalid": "无法办理",
    "forbidden": "无权操作",
}


class ConveneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    township_code: Code | None = Field(
        default=None, description="only for a leader of several townships"
    )
    held_at: AwareDatetime = Field(description="when the meeting sits")
    place: str = Field(min_length=1, max_length=200)
    agenda: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        min_length=1, max_length=30, description="议题, one line each"
    )
    case_ids: list[UUID] = Field(default_factory=list, max_length=50)
    whistle_ids: list[UUID] = Field(
        default_factory=list, max_length=50, description="overdue whistles of the township"
    )
    departments: list[Code] = Field(
        default_factory=list,
        max_length=30,
        description="departments summoned besides those of the referred whistles",
    )


class HeldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attended: list[Code] = Field(description="the summoned departments present")
    minutes: str = Field(min_length=1, max_length=20000, description="会议纪要")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_id: UUID | None = Field(default=None, description="needed when the meeting has several")
    owner_kind: OwnerKind
    owner_code: Code = Field(description="the department's code or the township unit's id")
    task: str = Field(min_length=1, max_length=2000)
    due_at: AwareDatetime


class DoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    result: str = Field(min_length=1, max_length=4000)
    evidence: list[Sha256] = Field(default_factory=list, description="SHA-256 of each file")
    officer: str | None = Field(default=None, max_length=200)


class DecisionView(BaseModel):
    decision_id: UUID
    case_id: UUID
    owner_kind: str
    owner_code: str
    task: str
    due_at: datetime
    status: Literal["running", "overdue", "met", "late", "lapsed"]
    recorded_at: datetime
    done_at: datetime | None
    result: str | None


class MeetingView(BaseModel):
    meeting_id: UUID
    township_code: str
    held_at: datetime
    place: str
    departments: list[str]
    agenda: list[str]
    case_ids: list[UUID]
    whistle_ids: list[UUID]
    convened_by: str
    convened_at: datetime
    held: bool
    attended: list[str] | None
    absent: list[str] | None
    minutes: str | None
    decisions: list[DecisionView]


class MeetingList(BaseModel):
    meetings: list[MeetingView]


@router.post("/meetings", status_code=201, response_model=MeetingView)
async def convene_meeting(body: ConveneIn, leader: Leader, runtime: RuntimeDep) -> MeetingView:
    """Convene a joint meeting of the township on a case or its overdue whistles; each
    department summoned is notified on its own topic."""
    township = _leaders_township(leader, body.township_code)
    counties: CountySet = runtime.state["counties"]
    # The departments of the township's county (two counties' departments share codes).
    reference = counties.of(counties.county_of_township(township))
    now = runtime.clock()
    asked = Convening(
        township_code=township,
        held_at=body.held_at,
        place=body.place,
        agenda=body.agenda,
        case_ids=body.case_ids,
        whistle_ids=body.whistle_ids,
        departments=list(body.departments),
    )
    async with runtime.transaction() as session:
        with answered_as_problems():
            meeting = await convene(
                session,
                uuid7(),
                asked,
                convened_by=leader,
                known_departments=reference.departments,
                counties=runtime.counties,
                now=now,
            )
        return _view(meeting, [], {}, now)


@router.get("/meetings", response_model=MeetingList)
async def list_meetings(
    caller: Reader,
    runtime: RuntimeDep,
    township: Annotated[Code | None, Query(description="a township code")] = None,
) -> MeetingList:
    """The meetings the caller may see, the latest convened first."""
    now = runtime.clock()
    async with runtime.sessions() as session:
        query = (
            select(Meeting)
            .where(_of_counties(caller, runtime), _readable(caller))
            .order_by(Meeting.convened_at.desc())  # type: ignore[attr-defined]
        )
        if township is not None:
            query = query.where(Meeting.township_code == township)
        meetings = [m for m in (await session.scalars(query)).all()]
        decisions, clocks = await _decisions(session, [m.id for m in meetings])
    return MeetingList(meetings=[_view(m, decisions.get(m.id, []), clocks, now) for m in meetings])


@router.get("/meetings/{meeting_id}", response_model=MeetingView)
async def read_meeting(meeting_id: UUID, caller: Reader, runtime: RuntimeDep) -> MeetingView:
    async with runtime.sessions() as session:
        meeting = await session.scalar(
            select(Meeting).where(
                Meeting.id == meeting_id,  # type: ignore[arg-type]
                _of_counties(caller, runtime),
                _readable(caller),
            )
        )
        if meeting is None:
            raise _problem(_missing(meeting_id))
        decisions, clocks = await _decisions(session, [meeting_id])
    return _view(meeting, decisions.get(meeting_id, []), clocks, runtime.clock())


@router.post("/meetings/{meeting_id}/held", response_model=MeetingHeld)
async def record_held(
    meeting_id: UUID, body: HeldIn, leader: Leader, runtime: RuntimeDep
) -> MeetingHeld:
    """The meeting sat: who of those summoned attended, and its minutes (会议纪要)."""
    async with runtime.transaction() as session:
        meeting = await _leaders_meeting(session, leader, meeting_id, runtime)
        with answered_as_problems():
            return await hold(
                session,
                meeting,
                attended=list(body.attended),
                minutes=body.minutes,
                recorded_by=leader.subject,
                now=runtime.clock(),
            )


@router.post(
    "/meetings/{meeting_id}/decisions", status_code=201, response_model=MeetingDecisionRecorded
)
async def record_decision(
    meeting_id: UUID, body: DecisionIn, leader: Leader, runtime: RuntimeDep
) -> MeetingDecisionRecorded:
    """A decision (议定事项) with its owner, task and due time; its clock starts on the ladder."""
    counties: CountySet = runtime.state["counties"]
    policies: PolicyBook = runtime.state["policies"]
    calendar = current_calendar(runtime)
    default = policies.for_urgency("general") or policies.policies[0]
    async with runtime.transaction() as session:
        meeting = await _leaders_meeting(session, leader, meeting_id, runtime)
        # The township's units, in its county's reference data (township codes are unique).
        reference = counties.of(counties.county_of_township(meeting.township_code))
        units = [u.id for u in reference.units.values() if u.township == meeting.township_code]
        with answered_as_problems():
            return await decide(
                session,
                meeting,
                uuid7(),
                Deciding(body.case_id, body.owner_kind, body.owner_code, body.task, body.due_at),
                township_units=units,
                default_policy=default,
                recorded_by=leader.subject,
                calendar_version=calendar.version,
                counties=runtime.counties,
                now=runtime.clock(),
            )


@router.post(
    "/meeting-decisions/{decision_id}/done", status_code=201, response_model=MeetingDecisionDone
)
async def decision_done(
    decision_id: UUID, body: DoneIn, caller: Owner, runtime: RuntimeDep
) -> MeetingDecisionDone:
    """The owner department reports its decision done (a unit reports through dispatch)."""
    async with runtime.transaction() as session:
        with answered_as_problems():
            return await report_done(
                session,
                decision_id,
                owner_kind="department",
                acting_for=_codes(caller, "dept"),
                result=body.result,
                evidence=list(body.evidence),
                actor=body.officer or caller.subject,
                via="http",
                now=runtime.clock(),
                reporter=caller,
                counties=runtime.counties,
            )


@contextmanager
def answered_as_problems() -> Iterator[None]:
    """A refusal of the rules, answered as its problem (404, 409, 422 or 403)."""
    try:
        yield
    except MeetingRefused as refused:
        raise _problem(refused.refusal) from refused


def _problem(refusal: Refusal) -> Problem:
    return Problem(
        STATUS[refusal.kind],
        TITLE[refusal.kind],
        refusal.detail,
        type_=PROBLEM + refusal.rule,
        rule=refusal.rule,
    )


def _missing(meeting_id: UUID) -> Refusal:
    return Refusal("not_found", "no-meeting", f"没有可查看的联席会议 {meeting_id}")


def _codes(caller: Principal, kind: str) -> set[str]:
    return {s.split(":", 1)[1] for s in caller.scopes if s.startswith(f"{kind}:")}


def _leaders_township(leader: Principal, township: str | None) -> str:
    """The township the leader convenes for: the one named, or their only one."""
    if township is None:
        own = _codes(leader, "township") - {"*"}
        if len(own) != 1:
            raise _problem(
                Refusal("invalid", "township-required", "请指明召开联席会议的乡镇（township_code）")
            )
        return own.pop()
    if not leader.may_act_on("township", township):
        raise _problem(
            Refusal("forbidden", "other-township", f"无权以乡镇 {township} 的名义召开联席会议")
        )
    return township


async def _leaders_meeting(
    session: AsyncSession, leader: Principal, meeting_id: UUID, runtime: Runtime
) -> Meeting:
    """The meeting, locked, if the leader leads its township in one of the leader's counties;
    another's, or another county's, reads as missing."""
    meeting = await session.scalar(
        select(Meeting)
        .where(Meeting.id == meeting_id, _of_counties(leader, runtime))  # type: ignore[arg-type]
        .with_for_update()
    )
    if meeting is None or not leader.may_act_on("township", meeting.township_code):
        raise _problem(_missing(meeting_id))
    return meeting


def _of_counties(caller: Principal, runtime: Runtime) -> ColumnElement[bool]:
    """The meetings of the caller's counties: a meeting is its cases' county (one township's
    cases, so one county's), read through its first case; another county's is missing."""
    first_case = cast(Meeting.case_ids[0].astext, Uuid)  # type: ignore[index]
    return of_readers_counties(first_case, caller, runtime.counties)


def _readable(caller: Principal) -> ColumnElement[bool]:
    """The meetings the caller may read, as one condition on ``meeting`` (so the list is
    filtered by the database): the county's readers every one; a township's leader and
    dispatcher their townships'; a department those it was summoned to; a unit member those
    with a decision its unit owns. A ``<kind>:*`` scope stands for every code."""
    if caller.roles & COUNTY_READERS:
        return true()
    allowed: list[ColumnElement[bool]] = []
    if caller.roles & {"township_leader", "dispatcher"}:
        allowed.append(_scoped(caller, "township", lambda codes: Meeting.township_code.in_(codes)))  # type: ignore[attr-defined]
    if "county_department" in caller.roles:
        allowed.append(
            _scoped(caller, "dept", lambda codes: Meeting.departments.has_any(array(codes)))  # type: ignore[attr-defined]
        )
    if "unit_member" in caller.roles:

        def owning(codes: list[str]) -> ColumnElement[bool]:
            return exists().where(
                MeetingDecision.meeting_id == Meeting.id,  # type: ignore[arg-type]
                MeetingDecision.owner_kind == "unit",  # type: ignore[arg-type]
                MeetingDecision.owner_code.in_(codes),  # type: ignore[attr-defined]
            )

        allowed.append(_scoped(caller, "unit", owning))
    return or_(false(), *allowed)


def _scoped(
    caller: Principal, kind: str, matching: Callable[[list[str]], ColumnElement[bool]]
) -> ColumnElement[bool]:
    """``matching`` the caller's ``<kind>:<code>`` codes; every row for ``<kind>:*``."""
    codes = _codes(caller, kind)
    if "*" in codes:
        return true()
    return matching(sorted(codes)) if codes else false()


async def _decisions(
    session: AsyncSession, meeting_ids: list[UUID]
) -> tuple[dict[UUID, list[MeetingDecision]], dict[UUID, CaseDeadline]]:
    """The meetings' decisions, in the order recorded, and each decision's clock."""
    if not meeting_ids:
        return {}, {}
    rows = (
        await session.scalars(
            select(MeetingDecision)
            .where(MeetingDecision.meeting_id.in_(meeting_ids))  # type: ignore[attr-defined]
            .order_by(MeetingDecision.recorded_at, MeetingDecision.id)  # type: ignore[arg-type]
        )
    ).all()
    clocks = (
        await session.scalars(
            select(CaseDeadline).where(
                CaseDeadline.decision_id.in_([d.id for d in rows])  # type: ignore[union-attr]
            )
        )
    ).all()
    by_meeting: dict[UUID, list[MeetingDecision]] = {}
    for row in rows:
        by_meeting.setdefault(row.meeting_id, []).append(row)
    return by_meeting, {c.decision_id: c for c in clocks if c.decision_id is not None}


def _view(
    meeting: Meeting,
    decisions: list[MeetingDecision],
    clocks: dict[UUID, CaseDeadline],
    now: datetime,
) -> MeetingView:
    held = meeting.minutes is not None
    attended = meeting.attended if held else None
    return MeetingView(
        meeting_id=meeting.id,
        township_code=meeting.township_code,
        held_at=meeting.held_at,
        place=meeting.place,
        departments=meeting.departments,
        agenda=meeting.agenda,
        case_ids=[UUID(c) for c in meeting.case_ids],
        whistle_ids=[UUID(w) for w in meeting.whistle_ids],
        convened_by=meeting.convened_by,
        convened_at=meeting.convened_at,
        held=held,
        attended=attended,
        absent=[d for d in meeting.departments if d not in (attended or [])] if held else None,
        minutes=meeting.minutes,
        decisions=[_decision_view(d, clocks.get(d.id), now) for d in decisions],
    )


def _decision_view(
    decision: MeetingDecision, clock: CaseDeadline | None, now: datetime
) -> DecisionView:
    status = clock.status if clock is not None else "running"
    if status == "running" and now > decision.due_at:
        status = "overdue"
    return DecisionView(
        decision_id=decision.id,
        case_id=decision.case_id,
        owner_kind=decision.owner_kind,
        owner_code=decision.owner_code,
        task=decision.task,
        due_at=decision.due_at,
        status=status,  # type: ignore[arg-type]
        recorded_at=decision.recorded_at,
        done_at=decision.done_at,
        result=decision.result,
    )


# --- the township's meeting page (联席会议) ---------------------------------------------------

page_router = pages.page_router(
    "township", "/township", Path(__file__).with_name("static"), shared=("pages",)
)
