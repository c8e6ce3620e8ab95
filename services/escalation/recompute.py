"""Provisional deadlines counted again once the business calendar covers their year.

A deadline reaching into a year the calendar lacked was counted Monday to Friday and flagged
``provisional_reason`` (``services/escalation/deadlines.py``). When the calendar gains that year
(the State Council's notice is added to ``calendar.yaml``: escalation puts the file in force by
itself, on SIGHUP or on ``POST /v1/calendar/reload``, at its next start, or when
``whistle recompute-deadlines`` is run), each such clock still running is counted again from
its start under the policy frozen onto it; its due and warning times move, its pending ladder
step is cancelled and rescheduled, and a ``whistle.deadline.recomputed`` event records it.

Every clock is counted again by the rule that set it:

- a case's first-response and resolution clocks by the policy (:func:`deadlines_for`);
- a summoned department's receipt clock (报到) by the policy's ``whistle_receipt``, and a reply
  clock counted from the whistle by the policy's resolution time
  (:func:`~services.escalation.whistle_protocol.whistle_deadlines`);
- a reply clock due with the case's resolution clock moves with it when the case's clock is
  counted again (as it moves with an extension), by the same rule;
- a clock an approved extension (延期) moved is counted again from its start, then each
  approved extension in the order decided: one granted in working days adds them again on
  the new calendar (it was provisional if it reached into the missing year), one granted as a
  date keeps that date; the warning keeps its lead as when it was granted
  (:func:`recount_extended`).

Their events carry the whistle and department, and a copy goes on the department's topic.

A pending ladder step counted Monday to Friday on a clock that was not (a chase or supervision
reaching into the missing year) is counted again from its predecessor too.

Left alone: clocks whose year is still missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import DeadlineRecomputed
from contracts.tenancy import Counties
from contracts.topics import DEADLINES
from services.escalation.calendar import BusinessCalendar
from services.escalation.counties import case_event, department_topic_for
from services.escalation.deadlines import (
    ANSWER_KINDS,
    LEGAL_REVIEW,
    ComputedDeadline,
    answer_deadline,
    deadlines_for,
    legal_review_deadline,
)
from services.escalation.extensions import moved_warning, requested_deadline
from services.escalation.ladder import PlannedStep, Step, first_step, next_step
from services.escalation.models import CaseDeadline, DeadlineExtension, EscalationStep
from services.escalation.policies import DeadlinePolicy
from services.escalation.whistle_protocol import (
    department_copy,
    replies_due_with,
    whistle_deadlines,
)
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.outbox import stage

CASE_KINDS = ("first_response", "resolution")
WHISTLE_KINDS = ("whistle_receipt", "whistle_reply")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fired:
    step: Step
    scheduled_for: datetime


def recount(
    policy: DeadlinePolicy,
    kind: str,
    started_at: datetime,
    calendar: BusinessCalendar,
    case_resolution: ComputedDeadline | None = None,
) -> ComputedDeadline | None:
    """The clock counted again on ``calendar`` by the rule that set it; None while the
    calendar still lacks a year. ``case_resolution``: for a reply clock due with the case's
    resolution clock, that clock as counted again."""
    if kind in ANSWER_KINDS:
        counted = answer_deadline(kind, policy, started_at, calendar)
    elif kind == LEGAL_REVIEW:
        counted = legal_review_deadline(policy, started_at, calendar)
    elif kind in CASE_KINDS:
        (counted,) = [d for d in deadlines_for(policy, started_at, calendar) if d.kind == kind]
    else:
        receipt, reply = whistle_deadlines(policy, started_at, calendar, case_resolution)
        counted = receipt if kind == "whistle_receipt" else reply
    return None if counted.provisional_reason else counted


@dataclass(frozen=True)
class Granted:
    """An approved extension: a date (``requested_due_at``) or a number of working days."""

    requested_due_at: datetime
    extra_working_days: int | None


def recount_extended(
    counted: ComputedDeadline, granted: Sequence[Granted], calendar: BusinessCalendar
) -> ComputedDeadline | None:
    """The recounted clock moved again by each approved extension, in the order decided; None
    while one granted in working days still reaches into a year the calendar lacks."""
    due, warn = counted.due_at, counted.warn_at
    for extension in granted:
        if extension.extra_working_days is None:
            new_due = extension.requested_due_at
        else:
            new_due, provisional = requested_deadline(
                due,
                requested_due_at=None,
                extra_working_days=extension.extra_working_days,
                calendar=calendar,
            )
            if provisional:
                return None
        warn = moved_warning(
            due_at=due,
            warn_at=warn,
            new_due_at=new_due,
            extra_working_days=extension.extra_working_days,
            calendar=calendar,
        )
        due = new_due
    return replace(counted, due_at=due, warn_at=warn)


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
    sessions: Sessions,
    calendar: BusinessCalendar,
    clock: Clock,
    *,
    counties: Counties | None,
    batch_size: int = 200,
) -> int:
    """Recount every running provisional clock the calendar now covers, and every pending
    step counted provisionally on a clock that is not; returns how many clocks. ``counties``
    names the default county, whose departments' topics keep their old names."""
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
                        CaseDeadline.id.not_in(skipped),  # type: ignore[union-attr]
                    )
                    .order_by(CaseDeadline.id)  # type: ignore[arg-type]
                    .limit(batch_size)
                    # The scheduler and the clock stops lock the same rows: never wait for them.
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not clocks:
                break
            for deadline in clocks:
                assert deadline.id is not None
                if deadline.status != "running" or deadline.provisional_reason is None:
                    continue  # moved with its case's clock earlier in this batch
                if await _recount_one(session, deadline, calendar, clock(), counties):
                    recounted += 1
                else:
                    skipped.add(deadline.id)
    await _recount_provisional_steps(sessions, calendar, clock)
    return recounted


def _policy(deadline: CaseDeadline) -> tuple[DeadlinePolicy, dict[str, object]]:
    frozen = {k: v for k, v in deadline.policy_snapshot.items() if k != "calendar_version"}
    return DeadlinePolicy.model_validate(frozen), frozen


async def _recount_one(
    session: AsyncSession,
    deadline: CaseDeadline,
    calendar: BusinessCalendar,
    now: datetime,
    counties: Counties | None,
) -> bool:
    policy, _ = _policy(deadline)
    if deadline.kind == "whistle_reply" and await _followed(session, deadline) is not None:
        return False  # due with the case's clock: it moves when that one is counted again
    counted = recount(policy, deadline.kind, deadline.started_at, calendar)
    if counted is not None:
        counted = recount_extended(counted, await _granted(session, deadline), calendar)
    if counted is None:
        return False
    old_due = deadline.due_at
    await _apply(session, deadline, counted, calendar, now, counties)
    if deadline.kind == "resolution" and deadline.whistle_id is None:
        for reply in await replies_due_with(session, deadline.case_id, old_due):
            reply_policy, _ = _policy(reply)
            moved = recount(reply_policy, reply.kind, reply.started_at, calendar, counted)
            if moved is not None:
                await _apply(session, reply, moved, calendar, now, counties)
    return True


async def _granted(session: AsyncSession, deadline: CaseDeadline) -> list[Granted]:
    """The clock's approved extensions, in the order decided."""
    rows = await session.scalars(
        select(DeadlineExtension)
        .where(
            DeadlineExtension.deadline_id == deadline.id,  # type: ignore[arg-type]
            DeadlineExtension.status == "approved",
        )
        .order_by(DeadlineExtension.decided_at)  # type: ignore[arg-type]
    )
    return [Granted(r.requested_due_at, r.extra_working_days) for r in rows]


async def _followed(session: AsyncSession, reply: CaseDeadline) -> CaseDeadline | None:
    """The case's running resolution clock a reply clock is due with, if it is."""
    case_clock: CaseDeadline | None = await session.scalar(
        select(CaseDeadline).where(
            CaseDeadline.case_id == reply.case_id,
            CaseDeadline.kind == "resolution",
            CaseDeadline.whistle_id.is_(None),  # type: ignore[union-attr]
            CaseDeadline.status == "running",
            CaseDeadline.due_at == reply.due_at,
        )
    )
    return case_clock


async def _apply(
    session: AsyncSession,
    deadline: CaseDeadline,
    counted: ComputedDeadline,
    calendar: BusinessCalendar,
    now: datetime,
    counties: Counties | None,
) -> None:
    """Put the recounted times on the locked clock, reschedule its pending step, and record
    it (on the department's topic too for a whistle clock)."""
    policy, frozen = _policy(deadline)
    steps = await _steps(session, deadline)
    pending = next((s for s in steps if s.fired_at is None and s.cancelled_at is None), None)
    if pending is not None:
        await _reschedule(session, steps, pending, counted, policy, calendar, now)
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
        whistle_id=deadline.whistle_id,
        department_code=deadline.department_code,
    )
    event = await case_event(session, deadline.case_id, payload, now)
    stage(session, DEADLINES, event)
    if deadline.department_code is not None:
        topic = department_topic_for(deadline.department_code, event, counties)
        stage(session, topic, department_copy(event))
    log.info("recounted provisional %s deadline: %s → %s", deadline.kind, old_due, counted.due_at)


async def _steps(session: AsyncSession, deadline: CaseDeadline) -> list[EscalationStep]:
    return list(
        (
            await session.scalars(
                select(EscalationStep)
                .where(EscalationStep.deadline_id == deadline.id)  # type: ignore[arg-type]
                .order_by(EscalationStep.id)  # type: ignore[arg-type]
            )
        ).all()
    )


async def _reschedule(
    session: AsyncSession,
    steps: list[EscalationStep],
    pending: EscalationStep,
    counted: ComputedDeadline,
    policy: DeadlinePolicy,
    calendar: BusinessCalendar,
    now: datetime,
) -> bool:
    """Replace the pending step by the one the recounted clock calls for, if it moved or was
    provisional; whether it was replaced."""
    fired = [s for s in steps if s.fired_at is not None]
    last = Fired(fired[-1].step, fired[-1].due_at) if fired else None  # type: ignore[arg-type]
    planned = rescheduled(
        pending.step,  # type: ignore[arg-type]
        last,
        counted=counted,
        policy=policy,
        calendar=calendar,
    )
    if planned is None or (
        planned.due_at == pending.due_at
        and planned.provisional_reason == pending.provisional_reason
    ):
        return False
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
    return True


async def _recount_provisional_steps(
    sessions: Sessions, calendar: BusinessCalendar, clock: Clock
) -> None:
    """Pending chases and supervisions counted Monday to Friday on clocks that are not
    provisional themselves (a clock due on 30 December whose chase reaches into January)."""
    async with sessions() as session, session.begin():
        rows = (
            await session.execute(
                select(EscalationStep, CaseDeadline)
                .join(CaseDeadline, CaseDeadline.id == EscalationStep.deadline_id)  # type: ignore[arg-type]
                .where(
                    EscalationStep.provisional_reason.is_not(None),  # type: ignore[union-attr]
                    EscalationStep.fired_at.is_(None),  # type: ignore[union-attr]
                    EscalationStep.cancelled_at.is_(None),  # type: ignore[union-attr]
                    CaseDeadline.status == "running",
                )
                .order_by(EscalationStep.id)  # type: ignore[arg-type]
                .with_for_update(of=CaseDeadline, skip_locked=True)
            )
        ).all()
        for pending, deadline in rows:
            policy, _ = _policy(deadline)
            counted = ComputedDeadline(deadline.kind, deadline.due_at, deadline.warn_at)
            steps = await _steps(session, deadline)
            if await _reschedule(session, steps, pending, counted, policy, calendar, clock()):
                log.info("recounted provisional %s step of clock %s", pending.step, deadline.id)
