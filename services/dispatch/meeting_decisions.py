"""The service layer of a township unit's joint-meeting decisions (联席会议议定事项).

Escalation owns the meeting and the decisions' clocks; a decision owned by a unit of a township
is kept here too (from ``whistle.meeting.decision_recorded``), because the unit acts through
dispatch: its member reports the decision done with the unit's token, as they act on the
unit's cases, and dispatch stages ``whistle.meeting.decision_reported`` for escalation to stop
the clock. Escalation's ``whistle.meeting.decision_done`` then marks it done here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import new_event
from contracts.events import MeetingDecisionDone, MeetingDecisionRecorded, MeetingDecisionReported
from contracts.topics import CASES
from services.dispatch.cases import SOURCE
from services.dispatch.models import UnitDecision
from services.runtime.auth import Principal
from services.runtime.outbox import stage


class DecisionRefused(Exception):
    """Why a unit may not report the decision: ``status`` answers it, ``rule`` names it."""

    def __init__(self, status: int, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.rule, self.detail = status, rule, detail


async def keep(session: AsyncSession, recorded: MeetingDecisionRecorded) -> None:
    """A decision a unit owns, kept for the unit; a department's is not dispatch's."""
    if recorded.owner_kind != "unit":
        return
    await session.execute(
        insert(UnitDecision)
        .values(
            decision_id=recorded.decision_id,
            meeting_id=recorded.meeting_id,
            case_id=recorded.case_id,
            township_code=recorded.township_code,
            unit_id=recorded.owner_code,
            task=recorded.task,
            due_at=recorded.due_at,
            recorded_at=recorded.recorded_at,
        )
        .on_conflict_do_nothing()
    )


async def mark_done(session: AsyncSession, done: MeetingDecisionDone) -> None:
    """Escalation recorded the decision done (its clock stopped)."""
    decision = await session.get(UnitDecision, done.decision_id, with_for_update=True)
    if decision is not None:
        decision.done_at, decision.on_time = done.done_at, done.on_time


async def report(
    session: AsyncSession,
    member: Principal,
    decision_id: UUID,
    *,
    result: str,
    evidence: Sequence[str],
    officer: str | None,
    now: datetime,
) -> MeetingDecisionReported:
    """The unit member reports their unit's decision done, once; another unit's is refused."""
    decision = await session.get(UnitDecision, decision_id, with_for_update=True)
    if decision is None:
        raise DecisionRefused(404, "no-decision", f"没有本单位的议定事项 {decision_id}")
    if not member.may_act_on("unit", decision.unit_id):
        raise DecisionRefused(
            403, "not-owner", f"该议定事项的责任单位为 {decision.unit_id}，无权报告办结"
        )
    if decision.reported_at is not None:
        raise DecisionRefused(409, "already-done", "该议定事项已报告办结")
    actor = officer or member.subject
    decision.reported_at, decision.reported_by, decision.result = now, actor, result
    reported = MeetingDecisionReported(
        meeting_id=decision.meeting_id,
        decision_id=decision_id,
        case_id=decision.case_id,
        unit_id=decision.unit_id,
        result=result,
        evidence=list(evidence),
        actor=actor,
        reported_at=now,
    )
    stage(session, CASES, new_event(SOURCE, str(decision.case_id), reported, now))
    return reported


async def of_units(
    session: AsyncSession, units: Collection[str] | None, townships: Collection[str] | None
) -> list[UnitDecision]:
    """The decisions of these units (or of the units of these townships), None for every one;
    those still to be done first, then by due time."""
    query = select(UnitDecision)
    if units is not None:
        query = query.where(UnitDecision.unit_id.in_(units))  # type: ignore[attr-defined]
    if townships is not None:
        query = query.where(UnitDecision.township_code.in_(townships))  # type: ignore[attr-defined]
    query = query.order_by(
        UnitDecision.done_at.is_not(None),  # type: ignore[union-attr]
        UnitDecision.due_at,
    )
    return list((await session.scalars(query)).all())
