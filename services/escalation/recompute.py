"""Provisional deadlines counted again once the business calendar covers their year.

A deadline reaching into a year the calendar lacked was counted Monday to Friday and flagged
``provisional_reason`` (``services/escalation/deadlines.py``). When the calendar gains that year
(the State Council's notice is published, ``calendar.yaml`` updated, escalation restarted, or
``whistle recompute-deadlines`` run), each such clock still running is counted again from its
start under the policy frozen onto it; its due and warning times move, its pending ladder step
is cancelled and rescheduled, and a ``whistle.deadline.recomputed`` event records it.

Left alone: clocks whose year is still missing, clocks an approved extension (延期) moved (their
due time is the one granted, not the policy's), and whistle clocks (their deadlines follow the
case's and are not counted from a policy of their own).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import new_event
from contracts.events import DeadlineRecomputed
from contracts.topics import DEADLINES
from services.escalation import SOURCE
from services.escalation.calendar import BusinessCalendar
from services.escalation.deadlines import ComputedDeadline, deadlines_for
from services.escalation.ladder import PlannedStep, Step, first_step, next_step
from services.escalation.models import CaseDeadline, DeadlineExtension, EscalationStep
from services.escalation.policies import DeadlinePolicy
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.outbox import stage

RECOUNTED_KINDS = ("first_response", "resolution")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fired:
    step: Step
    scheduled_for: datetime


def recount(
    policy: DeadlinePolicy, kind: str, started_at: datetime, calendar: BusinessCalendar
) -> ComputedDeadline | None:
    """The clock counted again on ``calendar``; None while the calendar still lacks a year."""
    (counted,) = [d for d in deadlines_for(policy, started_at, calendar) if d.kind == kind]
    return None if counted.provisional_reason else counted


def rescheduled(
    pending: Step,
    last_fired: Fired | None,
    *,
    counted: ComputedDeadline,
    policy: DeadlinePolicy,
    calendar: BusinessCalendar,
) -> PlannedStep | None:
    """When the pending step falls due on the recounted clock: the warning and overdue at its
    new times, a chase or supervision counted again from its predecessor's scheduled time."""
    if pending == "warning":
        return first_step(counted.warn_at)
    if pending == "overdue":
        return PlannedStep("overdue", counted.due_at)
    if last_fired is None:
        return None
    return next_step(
        last_fired.step,
        last_fired.scheduled_for,
        due_at=counted.due_at,
        policy=policy,
        calendar=calendar,
    )


async def recompute_provisional(
    sessions: Sessions, calendar: BusinessCalendar, clock: Clock, *, batch_size: int = 200
) -> int:
    """Recount every running provisional clock the calendar now covers; returns how many."""
    recounted = 0
    skipped: set[int] = set()
    while True:
        async with sessions() as session, session.begin():
            clocks = (
                await session.scalars(
                    select(CaseDeadline)
                    .where(
                        CaseDeadline.status == "running",
                        CaseDeadline.provisional_reason.is_not(None),  # type: ignore[union-attr]
                        CaseDeadline.kind.in_(RECOUNTED_KINDS),  # type: ignore[attr-defined]
                        CaseDeadline.id.not_in(skipped),  # type: ignore[union-attr]
                        ~exists().where(
                            DeadlineExtension.deadline_id == CaseDeadline.id,
                            DeadlineExtension.status == "approved",
                        ),
                    )
                    .order_by(CaseDeadline.id)  # type: ignore[arg-type]
                    .limit(batch_size)
                    # The scheduler and the clock stops lock the same rows: never wait for them.
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not clocks:
                return recounted
            for deadline in clocks:
                assert deadline.id is not None
                if await _recount_one(session, deadline, calendar, clock()):
                    recounted += 1
                else:
                    skipped.add(deadline.id)


async def _recount_one(
    session: AsyncSession, deadline: CaseDeadline, calendar: BusinessCalendar, now: datetime
) -> bool:
    frozen = {k: v for k, v in deadline.policy_snapshot.items() if k != "calendar_version"}
    policy = DeadlinePolicy.model_validate(frozen)
    counted = recount(policy, deadline.kind, deadline.started_at, calendar)
    if counted is None:
        return False
    steps = (
        await session.scalars(
            select(EscalationStep)
            .where(EscalationStep.deadline_id == deadline.id)  # type: ignore[arg-type]
            .order_by(EscalationStep.id)  # type: ignore[arg-type]
        )
    ).all()
    pending = next((s for s in steps if s.fired_at is None and s.cancelled_at is None), None)
    fired = [s for s in steps if s.fired_at is not None]
    if pending is not None:
        last = Fired(fired[-1].step, fired[-1].due_at) if fired else None  # type: ignore[arg-type]
        planned = rescheduled(
            pending.step,  # type: ignore[arg-type]
            last,
            counted=counted,
            policy=policy,
            calendar=calendar,
        )
        if planned is not None and planned.due_at != pending.due_at:
            await session.execute(
                update(EscalationStep)
                .where(EscalationStep.id == pending.id)  # type: ignore[arg-type]
                .values(cancelled_at=now)
            )
            session.add(
                EscalationStep(
                    deadline_id=pending.deadline_id,
                    step=planned.step,
                    # A step of the same name already exists in this generation (cancelled).
                    generation=max(s.generation for s in steps) + 1,
                    due_at=planned.due_at,
                    provisional_reason=planned.provisional_reason,
                )
            )
    reason = deadline.provisional_reason or ""
    old_due = deadline.due_at
    deadline.due_at, deadline.warn_at = counted.due_at, counted.warn_at
    deadline.provisional_reason = None
    deadline.policy_snapshot = {**frozen, "calendar_version": calendar.version}
    payload = DeadlineRecomputed(
        case_id=deadline.case_id,
        kind=deadline.kind,  # type: ignore[arg-type]
        round=deadline.round,
        old_due_at=old_due,
        due_at=counted.due_at,
        warn_at=counted.warn_at,
        calendar_version=calendar.version,
        provisional_reason=reason,
    )
    stage(session, DEADLINES, new_event(SOURCE, str(deadline.case_id), payload, now))
    log.info("recounted provisional %s deadline: %s → %s", deadline.kind, old_due, counted.due_at)
    return True
