"""The service layer of the joint meeting (联席会议): loads what the rules
(``services/escalation/meetings.py``) look at, applies them, saves, starts and stops the
decisions' clocks and stages the events, in the caller's transaction.

Escalation owns the meeting: it is the last rung of the whistle protocol ("unresolved
coordination goes to the joint meeting"), its inputs are overdue whistles and their clocks, its
decisions are clocks on the same ladder, fired by the same scheduler, and the departments it
summons hear of it on their own topics and answer on the department page — all escalation's.
Escalation knows a case's township from its assignment and its whistles, which is what a
township needs to refer the case; dispatch keeps the case itself.

Events: ``MeetingConvened``, ``MeetingHeld``, ``MeetingDecisionRecorded`` and
``MeetingDecisionDone`` on ``escalation.meetings.v1`` (subject: the meeting id); each summoned
department's ``MeetingSummoned``, and a copy of each decision it owns, on its own topic.

A meeting is its cases' county (one township's cases, so one county's; read through its first
case, as every read of it is): its events name that county, its notices go to that county's
departments' topics, and a leader or a department acting for another county finds no such
case, meeting or decision (tenancy, docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import new_event
from contracts.events import (
    MeetingConvened,
    MeetingDecisionDone,
    MeetingDecisionRecorded,
    MeetingHeld,
    MeetingSummoned,
)
from contracts.tenancy import Counties
from contracts.topics import MEETINGS
from services.escalation import SOURCE
from services.escalation.clocks import lapse_running, stop_clock
from services.escalation.counties import county_of, department_topic_for, outside_readers_counties
from services.escalation.ladder import first_step
from services.escalation.meetings import (
    DECISION_CLOCK,
    MeetingRefused,
    OwnerKind,
    Refusal,
    WhistleFacts,
    attendance,
    convening,
    deciding,
    decision_deadline,
    reporting,
)
from services.escalation.models import (
    CaseAssignment,
    CaseDeadline,
    EscalationStep,
    Meeting,
    MeetingDecision,
    WhistleSummons,
)
from services.escalation.policies import DeadlinePolicy
from services.escalation.whistle_protocol import department_copy
from services.runtime.auth import Principal
from services.runtime.outbox import stage

Via = Literal["http", "kafka", "dispatch"]


@dataclass(frozen=True)
class Convening:
    """What a township leader asks for: the meeting's when, where and what."""

    township_code: str
    held_at: datetime
    place: str
    agenda: list[str]
    case_ids: list[UUID]
    whistle_ids: list[UUID]
    departments: list[str]


async def convene(
    session: AsyncSession,
    meeting_id: UUID,
    asked: Convening,
    *,
    convened_by: Principal,
    known_departments: Collection[str],
    counties: Counties | None,
    now: datetime,
) -> Meeting:
    """Convene the meeting and summon its departments, or raise ``MeetingRefused``; a case
    of another county than the leader's (asked for, or a referred whistle's) is missing."""
    township = asked.township_code
    agenda = convening(
        township,
        case_townships=await _case_townships(session, asked.case_ids),
        whistles=await whistle_facts(session, asked.whistle_ids, now),
        whistle_ids=asked.whistle_ids,
        departments=asked.departments,
        known_departments=known_departments,
    )
    for case_id in await outside_readers_counties(session, agenda.case_ids, convened_by, counties):
        raise MeetingRefused(Refusal("not_found", "no-case", f"没有可提请联席会议的案件 {case_id}"))
    county = await county_of(session, agenda.case_ids[0])
    meeting = Meeting(
        id=meeting_id,
        township_code=township,
        held_at=asked.held_at,
        place=asked.place,
        departments=list(agenda.departments),
        agenda=list(asked.agenda),
        case_ids=[str(c) for c in agenda.case_ids],
        whistle_ids=[str(w) for w in agenda.whistle_ids],
        convened_by=convened_by.subject,
        convened_at=now,
    )
    session.add(meeting)
    convened = MeetingConvened(
        meeting_id=meeting_id,
        township_code=township,
        held_at=asked.held_at,
        place=asked.place,
        departments=list(agenda.departments),
        agenda=list(asked.agenda),
        case_ids=list(agenda.case_ids),
        whistle_ids=list(agenda.whistle_ids),
        convened_by=convened_by.subject,
        convened_at=now,
    )
    subject = str(meeting_id)
    stage(session, MEETINGS, new_event(SOURCE, subject, convened, now, county))
    summoning = await _summoning_whistles(session, agenda.whistle_ids)
    for department in agenda.departments:
        notice = MeetingSummoned(
            meeting_id=meeting_id,
            department_code=department,
            township_code=township,
            held_at=asked.held_at,
            place=asked.place,
            agenda=list(asked.agenda),
            case_ids=list(agenda.case_ids),
            whistle_ids=summoning.get(department, []),
        )
        summons = new_event(SOURCE, subject, notice, now, county)
        stage(session, department_topic_for(department, summons, counties), summons)
    return meeting


async def hold(
    session: AsyncSession,
    meeting: Meeting,
    *,
    attended: Sequence[str],
    minutes: str,
    recorded_by: str,
    now: datetime,
) -> MeetingHeld:
    """The meeting sat: who attended, and its minutes (会议纪要); recorded once."""
    absent = attendance(meeting.departments, attended, held=meeting.minutes is not None)
    meeting.attended = list(dict.fromkeys(attended))
    meeting.minutes, meeting.minutes_recorded_at = minutes, now
    held = MeetingHeld(
        meeting_id=meeting.id,
        township_code=meeting.township_code,
        attended=meeting.attended,
        absent=absent,
        minutes=minutes,
        recorded_by=recorded_by,
        recorded_at=now,
    )
    county = await meeting_county(session, meeting)
    stage(session, MEETINGS, new_event(SOURCE, str(meeting.id), held, now, county))
    return held


async def meeting_county(session: AsyncSession, meeting: Meeting) -> str | None:
    """The county of the meeting: its first case's (None: learnt for none, the default)."""
    return await county_of(session, UUID(meeting.case_ids[0]))


@dataclass(frozen=True)
class Deciding:
    """A decision (议定事项) as the meeting recorded it."""

    case_id: UUID | None
    owner_kind: OwnerKind
    owner_code: str
    task: str
    due_at: datetime


async def decide(
    session: AsyncSession,
    meeting: Meeting,
    decision_id: UUID,
    asked: Deciding,
    *,
    township_units: Collection[str],
    default_policy: DeadlinePolicy,
    recorded_by: str,
    calendar_version: str,
    counties: Counties | None,
    now: datetime,
) -> MeetingDecisionRecorded:
    """Record a decision and start its clock on the ladder (warning step first), or raise
    ``MeetingRefused``. The ladder is the policy frozen onto the decision's case (its newest
    clock), else ``default_policy``: the meeting escalates like the case it settles."""
    case_id = deciding(
        held=meeting.minutes is not None,
        case_id=asked.case_id,
        meeting_cases=[UUID(c) for c in meeting.case_ids],
        owner_kind=asked.owner_kind,
        owner_code=asked.owner_code,
        summoned=meeting.departments,
        township_units=township_units,
        due_at=asked.due_at,
        now=now,
    )
    frozen = await _case_policy(session, case_id)
    policy = DeadlinePolicy.model_validate(frozen) if frozen is not None else default_policy
    deadline = decision_deadline(now, asked.due_at, policy.warn_at_fraction)
    department = asked.owner_code if asked.owner_kind == "department" else None
    row = MeetingDecision(
        id=decision_id,
        meeting_id=meeting.id,
        case_id=case_id,
        township_code=meeting.township_code,
        owner_kind=asked.owner_kind,
        owner_code=asked.owner_code,
        task=asked.task,
        due_at=deadline.due_at,
        recorded_by=recorded_by,
        recorded_at=now,
    )
    session.add(row)
    clock = CaseDeadline(
        case_id=case_id,
        kind=DECISION_CLOCK,
        started_at=now,
        due_at=deadline.due_at,
        warn_at=deadline.warn_at,
        policy_id=policy.id,
        policy_snapshot={**policy.model_dump(mode="json"), "calendar_version": calendar_version},
        department_code=department,
        decision_id=decision_id,
    )
    session.add(clock)
    await session.flush()  # for its id
    assert clock.id is not None
    planned = first_step(deadline.warn_at)
    session.add(EscalationStep(deadline_id=clock.id, step=planned.step, due_at=planned.due_at))
    recorded = MeetingDecisionRecorded(
        **row.model_dump(exclude={"id", "result", "evidence", "done_at", "done_by"}),
        decision_id=decision_id,
        warn_at=deadline.warn_at,
        policy_id=policy.id,
    )
    event = new_event(SOURCE, str(meeting.id), recorded, now, await county_of(session, case_id))
    stage(session, MEETINGS, event)
    if department is not None:
        stage(session, department_topic_for(department, event, counties), department_copy(event))
    return recorded


async def report_done(
    session: AsyncSession,
    decision_id: UUID,
    *,
    owner_kind: OwnerKind,
    acting_for: Collection[str],
    result: str,
    evidence: Sequence[str],
    actor: str | None,
    via: Via,
    now: datetime,
    reporter: Principal | None = None,
    counties: Counties | None = None,
) -> MeetingDecisionDone:
    """The owner reports the decision done: its clock stops (on time or late), once. Only the
    owner may: a department for its own decisions, a unit for its own. A ``reporter``'s token
    acts in its counties only: another county's decision is missing (departments of two
    counties share codes). A unit's report comes through dispatch, which checked its token."""
    decision = await session.get(MeetingDecision, decision_id, with_for_update=True)
    if decision is None or (
        reporter is not None
        and await outside_readers_counties(session, [decision.case_id], reporter, counties)
    ):
        raise MeetingRefused(Refusal("not_found", "no-decision", f"没有议定事项 {decision_id}"))
    reporting(
        owner_kind=decision.owner_kind,
        owner_code=decision.owner_code,
        # A unit does not act for a department's decision, nor a department for a unit's.
        acting_for=acting_for if decision.owner_kind == owner_kind else (),
        done=decision.done_at is not None,
    )
    clock = await session.scalar(
        select(CaseDeadline).where(CaseDeadline.decision_id == decision_id).with_for_update()
    )
    assert clock is not None, "a decision always has its clock"
    if clock.status == "running":
        await stop_clock(session, clock, now, MeetingDecisionDone.event_type, now)
    decision.result, decision.evidence = result, list(evidence)
    decision.done_at, decision.done_by = now, actor
    done = MeetingDecisionDone(
        meeting_id=decision.meeting_id,
        decision_id=decision_id,
        case_id=decision.case_id,
        owner_kind=decision.owner_kind,  # type: ignore[arg-type]
        owner_code=decision.owner_code,
        result=result,
        evidence=list(evidence),
        done_at=now,
        due_at=decision.due_at,
        on_time=now <= decision.due_at,
        via=via,
        actor=actor,
    )
    county = await county_of(session, decision.case_id)
    stage(session, MEETINGS, new_event(SOURCE, str(decision.meeting_id), done, now, county))
    return done


async def lapse_decisions(
    session: AsyncSession, case_id: UUID, closed_at: datetime, closed_by: str, now: datetime
) -> None:
    """The case closed: its decisions' clocks still running lapse, as its whistles' do, so
    that nobody is chased or supervised about a closed case."""
    decisions = CaseDeadline.kind == DECISION_CLOCK
    await lapse_running(session, case_id, decisions, closed_at, closed_by, now)


async def whistle_facts(
    session: AsyncSession, whistle_ids: Sequence[UUID], now: datetime
) -> list[WhistleFacts]:
    """Each summoned department of the whistles, with whether it is open and overdue now."""
    if not whistle_ids:
        return []
    summonses = (
        await session.scalars(
            select(WhistleSummons).where(WhistleSummons.whistle_id.in_(whistle_ids))  # type: ignore[attr-defined]
        )
    ).all()
    clocks = (
        await session.scalars(
            select(CaseDeadline).where(CaseDeadline.whistle_id.in_(whistle_ids))  # type: ignore[union-attr]
        )
    ).all()
    running: dict[tuple[UUID, str], list[CaseDeadline]] = {}
    for clock in clocks:
        if clock.status == "running":
            assert clock.whistle_id is not None and clock.department_code is not None
            running.setdefault((clock.whistle_id, clock.department_code), []).append(clock)
    facts = []
    for summons in summonses:
        mine = running.get((summons.whistle_id, summons.department_code), [])
        facts.append(
            WhistleFacts(
                whistle_id=summons.whistle_id,
                department_code=summons.department_code,
                case_id=summons.case_id,
                township_code=summons.township_code,
                # The receipt clock stops at 报到, the reply clock at the reply; either running
                # past its due time is the department's default.
                overdue=any(c.due_at < now for c in mine),
                open=summons.replied_at is None and bool(mine),
            )
        )
    return facts


async def _case_townships(session: AsyncSession, case_ids: Sequence[UUID]) -> dict[UUID, set[str]]:
    """Each case with the townships escalation knows it under: its assignment's, its whistles'."""
    found: dict[UUID, set[str]] = {case_id: set() for case_id in dict.fromkeys(case_ids)}
    if not found:
        return found
    held = await session.execute(
        select(CaseAssignment.case_id, CaseAssignment.township_code).where(
            CaseAssignment.case_id.in_(found)  # type: ignore[attr-defined]
        )
    )
    whistled = await session.execute(
        select(WhistleSummons.case_id, WhistleSummons.township_code).where(
            WhistleSummons.case_id.in_(found)  # type: ignore[attr-defined]
        )
    )
    for case_id, township in [*held.all(), *whistled.all()]:
        if township:
            found[case_id].add(township)
    return found


async def _summoning_whistles(
    session: AsyncSession, whistle_ids: Sequence[UUID]
) -> dict[str, list[UUID]]:
    """For each department, the referred whistles that had summoned it."""
    if not whistle_ids:
        return {}
    rows = await session.execute(
        select(WhistleSummons.department_code, WhistleSummons.whistle_id).where(
            WhistleSummons.whistle_id.in_(whistle_ids)  # type: ignore[attr-defined]
        )
    )
    summoning: dict[str, list[UUID]] = {}
    for department, whistle_id in rows.all():
        summoning.setdefault(department, []).append(whistle_id)
    return summoning


async def _case_policy(session: AsyncSession, case_id: UUID) -> dict[str, object] | None:
    """The policy frozen onto the case's newest own clock, without its calendar version."""
    snapshot = await session.scalar(
        select(CaseDeadline.policy_snapshot)
        .where(
            CaseDeadline.case_id == case_id,
            CaseDeadline.whistle_id.is_(None),  # type: ignore[union-attr]
            CaseDeadline.decision_id.is_(None),  # type: ignore[union-attr]
        )
        .order_by(CaseDeadline.started_at.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    if snapshot is None:
        return None
    return {k: v for k, v in snapshot.items() if k != "calendar_version"}
