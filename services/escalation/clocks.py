"""The clock service: a case's clocks set on assignment, stopped when the case is accepted
(first response) or resolved (resolution), a new round of the resolution clock when it is
reopened; a legal review's (法制审核) clock, a round per request; and stopping or moving any
clock, a summoned department's too (the whistle protocol,
``services/escalation/whistle_protocol.py``, and extensions, ``extension_api.py``, use them).
The consumer (``services/escalation/consumers.py``) calls it with each case event's own time.

Each clock's escalation ladder lives in ``escalation_step`` rows written in the same transaction
as the clock: a started clock gets its warning step, a stopped one has its pending step
cancelled. The scheduler (``services/escalation/scheduler.py``) fires the steps.

A case event reaches escalation a little after it happened, and the scheduler may fire a step in
between (an overdue at 10:00:05 for a case accepted at 09:59:58 whose event arrived at 10:00:07).
The stop then names, in ``DeadlineStopped.premature_steps``, the fired steps that were due at or
after the stop's time: the ledger keeps them, and whoever counts chases and supervisions can
discount them. No further step fires: the pending one is cancelled with the stop."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

from prometheus_client import Counter
from sqlalchemy import ColumnElement, TextClause, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import (
    CaseAssigned,
    Deadline,
    DeadlinesSet,
    DeadlineStopped,
)
from contracts.topics import DEADLINES
from services.escalation.calendar import BusinessCalendar
from services.escalation.counties import case_event
from services.escalation.deadlines import (
    ANSWER_KINDS,
    LEGAL_REVIEW,
    ComputedDeadline,
    answer_deadline,
    deadlines_for,
    legal_review_deadline,
    stop_outcome,
)
from services.escalation.extensions import replanned_step
from services.escalation.ladder import first_step
from services.escalation.models import CaseDeadline, EscalationStep
from services.escalation.policies import DeadlinePolicy
from services.runtime.outbox import stage

log = logging.getLogger(__name__)
PROVISIONAL_DEADLINES = Counter(
    "whistle_deadlines_provisional_total",
    "Deadlines counted Monday to Friday because the business calendar lacks their year",
)


async def start_clocks(
    session: AsyncSession,
    assigned: CaseAssigned,
    policy: DeadlinePolicy,
    start: datetime,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    """Set the assigned case's first-response and resolution clocks, counted from ``start`` under
    ``policy`` (frozen onto each clock with the calendar's version), each with its warning step;
    record who holds the case; stage ``DeadlinesSet`` for the clocks newly set."""
    computed = deadlines_for(policy, start, calendar)
    created = await insert_clocks(
        session,
        ASSIGNED_CLOCKS,
        assigned.case_id,
        computed,
        policy,
        start,
        calendar,
        # Who holds the case since ``start``.
        also={"unit_id": assigned.unit_id, "township_code": assigned.township_code},
    )
    await _announce(session, assigned.case_id, policy, assigned.urgency, created, now)


async def start_answer_clock(
    session: AsyncSession,
    case_id: UUID,
    kind: str,
    urgency: str,
    policy: DeadlinePolicy,
    start: datetime,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    """A clock the township answers within the policy's first-response time from ``start``
    (``deadlines.ANSWER_KINDS``): a referral's (移送, stopped by the case's acceptance) or a
    request for assistance's (协助, stopped by the assisting unit's first progress), with its
    warning step and ladder like any case clock; ``DeadlinesSet`` announces it."""
    computed = answer_deadline(kind, policy, start, calendar)
    created = await insert_clocks(
        session, CASE_CLOCKS, case_id, [computed], policy, start, calendar
    )
    await _announce(session, case_id, policy, urgency, created, now)


def _clocks_statement(on_conflict: str, also: str = "") -> TextClause:
    """Clocks of one case under one policy, each with the first step of its ladder, in one
    statement: the rows vary by kind (arrays, one element per clock), the rest is shared.
    Returns the kinds it inserted. ``also`` adds a write of the same event to the statement
    (a further ``WITH`` entry), saving its round trip. Built once at import: building the
    inserts per case event, and flushing each clock for its id before adding its step, was
    most of what escalation spent on a ``CaseAssigned`` (issue #17)."""
    return text(
        f"""
        WITH wanted AS (
            SELECT * FROM unnest(
                CAST(:kinds AS text[]), CAST(:due_ats AS timestamptz[]),
                CAST(:warn_ats AS timestamptz[]), CAST(:provisional_reasons AS text[]),
                CAST(:steps AS text[]), CAST(:step_due_ats AS timestamptz[])
            ) AS w(kind, due_at, warn_at, provisional_reason, step, step_due_at)
        ), clocks AS (
            INSERT INTO deadline (
                case_id, kind, round, status, started_at, due_at, warn_at, policy_id,
                policy_snapshot, provisional_reason, whistle_id, department_code
            )
            SELECT CAST(:case_id AS uuid), kind, 1, 'running', CAST(:started_at AS timestamptz),
                due_at, warn_at, CAST(:policy_id AS text), CAST(:policy_snapshot AS jsonb),
                provisional_reason, CAST(:whistle_id AS uuid), CAST(:department_code AS text)
            FROM wanted
            {on_conflict}
            RETURNING id, kind
        ), first_steps AS (
            INSERT INTO escalation_step (deadline_id, step, due_at)
            SELECT clocks.id, wanted.step, wanted.step_due_at FROM clocks JOIN wanted USING (kind)
        ){also}
        SELECT kind FROM clocks
        """
    ).bindparams(bindparam("policy_snapshot", type_=JSONB))


# The case's own clocks: neither a whistle's nor a meeting decision's. A case assigned again
# (after a rejection, or by arbitration) keeps the clocks it has: the citizen's deadline does
# not restart because a unit sent the case back.
_CASE_CLOCK_CONFLICT = (
    "ON CONFLICT (case_id, kind, round) WHERE whistle_id IS NULL AND decision_id IS NULL DO NOTHING"
)
CASE_CLOCKS = _clocks_statement(_CASE_CLOCK_CONFLICT)
# An assigned case's clocks, and who holds the case now (for extensions): an older assignment
# arriving late does not overwrite a newer one.
ASSIGNED_CLOCKS = _clocks_statement(
    _CASE_CLOCK_CONFLICT,
    also="""
        , held AS (
            INSERT INTO case_assignment (case_id, unit_id, township_code, assigned_at)
            VALUES (
                CAST(:case_id AS uuid), CAST(:unit_id AS text), CAST(:township_code AS text),
                CAST(:started_at AS timestamptz)
            )
            ON CONFLICT (case_id) DO UPDATE SET
                unit_id = EXCLUDED.unit_id,
                township_code = EXCLUDED.township_code,
                assigned_at = EXCLUDED.assigned_at
            WHERE case_assignment.assigned_at <= EXCLUDED.assigned_at
        )""",
)
# A summoned department's clocks are new with its summons.
WHISTLE_CLOCKS = _clocks_statement("")


async def insert_clocks(
    session: AsyncSession,
    statement: TextClause,
    case_id: UUID,
    computed: Sequence[ComputedDeadline],
    policy: DeadlinePolicy,
    start: datetime,
    calendar: BusinessCalendar,
    *,
    whistle_id: UUID | None = None,
    department_code: str | None = None,
    also: Mapping[str, object] | None = None,
) -> list[ComputedDeadline]:
    """Insert ``computed`` clocks of the case (``CASE_CLOCKS``, or a summoned department's,
    ``WHISTLE_CLOCKS``), each with its warning step, under ``policy`` (frozen onto each clock
    with the calendar's version); those it inserted. ``also`` binds the parameters of the
    statement's own further write (``ASSIGNED_CLOCKS``: who holds the case)."""
    planned = [first_step(deadline.warn_at) for deadline in computed]
    # Not flushing the session first (see ``counties.learn``): the statement's own rows are
    # all it writes, and what it checks (a clock of the same case, kind and round) the
    # session never holds unflushed — a clock added through it is flushed at once for its id.
    connection = await session.connection()
    inserted = set(
        await connection.scalars(
            statement,
            {
                "kinds": [d.kind for d in computed],
                "due_ats": [d.due_at for d in computed],
                "warn_ats": [d.warn_at for d in computed],
                "provisional_reasons": [d.provisional_reason for d in computed],
                "steps": [p.step for p in planned],
                "step_due_ats": [p.due_at for p in planned],
                "case_id": case_id,
                "started_at": start,
                "policy_id": policy.id,
                # Which holidays and working hours counted is part of the terms, like the policy.
                "policy_snapshot": {
                    **policy.model_dump(mode="json"),
                    "calendar_version": calendar.version,
                },
                "whistle_id": whistle_id,
                "department_code": department_code,
                **(also or {}),
            },
        )
    )
    created = [deadline for deadline in computed if deadline.kind in inserted]
    for deadline in created:
        if deadline.provisional_reason:
            PROVISIONAL_DEADLINES.inc()
            log.warning("provisional %s deadline: %s", deadline.kind, deadline.provisional_reason)
    return created


async def _announce(
    session: AsyncSession,
    case_id: UUID,
    policy: DeadlinePolicy,
    urgency: str,
    created: list[ComputedDeadline],
    now: datetime,
) -> None:
    """Stage ``DeadlinesSet`` for the clocks newly set, if any."""
    if not created:
        return
    payload = DeadlinesSet(
        case_id=case_id,
        policy_id=policy.id,
        urgency=urgency,  # type: ignore[arg-type]
        deadlines=[
            Deadline(
                kind=d.kind,  # type: ignore[arg-type]
                due_at=d.due_at,
                warn_at=d.warn_at,
                provisional_reason=d.provisional_reason,
            )
            for d in created
        ],
    )
    stage(session, DEADLINES, await case_event(session, case_id, payload, now))


async def stop_case_clock(
    session: AsyncSession,
    case_id: UUID,
    kind: str,
    *,
    stopped_at: datetime,
    stopped_by: str,
    now: datetime,
) -> None:
    """Stop the case's newest clock of ``kind`` if it is running (see :func:`stop_clock`); a
    clock already stopped, or none (assigned before escalation kept clocks), is left alone."""
    running = await latest_clock(session, case_id, kind)
    if running is None or running.status != "running":
        return
    await stop_clock(session, running, stopped_at, stopped_by, now)


async def lapse_answer_clocks(
    session: AsyncSession, case_id: UUID, closed_at: datetime, closed_by: str, now: datetime
) -> None:
    """The case closed: a referral's or an assistance request's clock still running
    (``deadlines.ANSWER_KINDS``: the township never answered) lapses, as a summoned
    department's does, so that nobody is chased about a closed case."""
    for kind in ANSWER_KINDS:
        running = await latest_clock(session, case_id, kind)
        if running is not None and running.status == "running":
            await stop_clock(session, running, closed_at, closed_by, now, lapsed=True)


async def lapse_running(
    session: AsyncSession,
    case_id: UUID,
    which: ColumnElement[bool],
    closed_at: datetime,
    closed_by: str,
    now: datetime,
) -> list[DeadlineStopped]:
    """The case closed: each of its running clocks ``which`` selects lapses (its pending step
    cancelled, ``DeadlineStopped`` with ``lapsed``), in id order, locked."""
    running = (
        await session.scalars(
            select(CaseDeadline)
            .where(CaseDeadline.case_id == case_id, CaseDeadline.status == "running", which)
            .order_by(CaseDeadline.id)  # type: ignore[arg-type]
            .with_for_update()
        )
    ).all()
    return [
        await stop_clock(session, clock, closed_at, closed_by, now, lapsed=True)
        for clock in running
    ]


async def restart_resolution(
    session: AsyncSession,
    case_id: UUID,
    start: datetime,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    """A reopened case's new round of the resolution clock, counted from ``start`` under the
    policy frozen onto the case, not today's policy; ``DeadlinesSet`` names the round."""
    latest = await latest_clock(session, case_id, "resolution")
    if latest is None:
        return  # assigned before escalation kept clocks for it: nothing to restart
    frozen = {k: v for k, v in latest.policy_snapshot.items() if k != "calendar_version"}
    policy = DeadlinePolicy.model_validate(frozen)
    (resolution,) = [d for d in deadlines_for(policy, start, calendar) if d.kind == "resolution"]
    await _next_round(session, case_id, resolution, latest.round + 1, policy, start, calendar, now)


async def case_policy_id(session: AsyncSession, case_id: UUID) -> str | None:
    """The deadline policy the case's own clocks were set under (its newest resolution
    clock's); None for a case escalation keeps no clocks for."""
    policy_id: str | None = await session.scalar(
        select(CaseDeadline.policy_id)
        .where(CaseDeadline.case_id == case_id, CaseDeadline.kind == "resolution")
        .order_by(CaseDeadline.round.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    return policy_id


async def start_legal_review_clock(
    session: AsyncSession,
    case_id: UUID,
    policy: DeadlinePolicy,
    start: datetime,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    """法制审核: a penalty decision put to legal review starts a clock of its own, due the
    policy's ``legal_review`` time after ``start`` (the request), with its warning step and
    ladder like any case clock. Each request is a round: a decision returned and submitted
    again is reviewed again on a new round, counted from the new request."""
    latest = await latest_clock(session, case_id, LEGAL_REVIEW)
    if latest is not None and latest.status == "running":
        # Dispatch holds one review at a time; a request while one runs (not sent by dispatch
        # as it stands) lapses the old round rather than leaving two clocks for one reviewer.
        await stop_clock(
            session, latest, start, "whistle.case.legal_review_requested", now, lapsed=True
        )
    round_ = latest.round + 1 if latest is not None else 1
    review = legal_review_deadline(policy, start, calendar)
    await _next_round(session, case_id, review, round_, policy, start, calendar, now)


async def _next_round(
    session: AsyncSession,
    case_id: UUID,
    deadline: ComputedDeadline,
    round_: int,
    policy: DeadlinePolicy,
    start: datetime,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    """Insert round ``round_`` of the case's clock ``deadline`` with its warning step, under
    ``policy`` (frozen onto it with the calendar's version); ``DeadlinesSet`` names the round."""
    clock = CaseDeadline(
        case_id=case_id,
        kind=deadline.kind,
        round=round_,
        started_at=start,
        due_at=deadline.due_at,
        warn_at=deadline.warn_at,
        policy_id=policy.id,
        policy_snapshot={**policy.model_dump(mode="json"), "calendar_version": calendar.version},
        provisional_reason=deadline.provisional_reason,
    )
    session.add(clock)
    await session.flush()  # for its id
    assert clock.id is not None
    session.add(_warning_step(clock.id, deadline.warn_at))
    if deadline.provisional_reason:
        PROVISIONAL_DEADLINES.inc()
        log.warning("provisional %s deadline: %s", deadline.kind, deadline.provisional_reason)
    payload = DeadlinesSet(
        case_id=case_id,
        policy_id=policy.id,
        urgency=policy.urgency,
        deadlines=[
            Deadline(
                kind=deadline.kind,  # type: ignore[arg-type]
                due_at=deadline.due_at,
                warn_at=deadline.warn_at,
                provisional_reason=deadline.provisional_reason,
                round=round_,
            )
        ],
    )
    stage(session, DEADLINES, await case_event(session, case_id, payload, now))


async def stop_clock(
    session: AsyncSession,
    running: CaseDeadline,
    stopped_at: datetime,
    stopped_by: str,
    now: datetime,
    *,
    lapsed: bool = False,
) -> DeadlineStopped:
    """Stop a running clock, locked by the caller: met or late (or ``lapsed``: ended without
    the answer it waited for), its pending step cancelled, and ``DeadlineStopped`` staged (with
    the whistle and department of a whistle clock, and the steps that fired prematurely)."""
    outcome, running.late_by_seconds = stop_outcome(running.due_at, stopped_at)
    running.status = "lapsed" if lapsed else outcome
    running.stopped_at = stopped_at
    # The clock row is locked, so a scheduler firing this clock's step has either committed
    # (its next step is visible here) or skips the clock until we commit.
    await _cancel_pending(session, running, now)
    payload = DeadlineStopped(
        case_id=running.case_id,
        kind=running.kind,  # type: ignore[arg-type]
        round=running.round,
        due_at=running.due_at,
        stopped_at=stopped_at,
        on_time=running.status == "met",
        late_by_seconds=running.late_by_seconds,
        stopped_by=stopped_by,
        whistle_id=running.whistle_id,
        department_code=running.department_code,
        decision_id=running.decision_id,
        lapsed=lapsed,
        premature_steps=await _premature_steps(session, running, stopped_at),
    )
    stage(session, DEADLINES, await case_event(session, running.case_id, payload, now))
    return payload


async def move_clock(
    session: AsyncSession,
    clock: CaseDeadline,
    *,
    due_at: datetime,
    warn_at: datetime,
    now: datetime,
) -> None:
    """Move a running clock, locked by the caller, to new due and warning times: its pending
    step is cancelled and it climbs a new ladder generation from the step the new times call
    for (the warning if still ahead, else overdue)."""
    clock.due_at, clock.warn_at = due_at, warn_at
    await _cancel_pending(session, clock, now)
    generation = await session.scalar(
        select(func.coalesce(func.max(EscalationStep.generation), 0)).where(
            EscalationStep.deadline_id == clock.id  # type: ignore[arg-type]
        )
    )
    planned = replanned_step(warn_at=warn_at, due_at=due_at, now=now)
    assert clock.id is not None
    session.add(
        EscalationStep(
            deadline_id=clock.id,
            step=planned.step,
            generation=int(generation or 0) + 1,
            due_at=planned.due_at,
        )
    )


async def _cancel_pending(session: AsyncSession, clock: CaseDeadline, now: datetime) -> None:
    await session.execute(
        update(EscalationStep)
        .where(
            EscalationStep.deadline_id == clock.id,  # type: ignore[arg-type]
            EscalationStep.fired_at.is_(None),  # type: ignore[union-attr]
            EscalationStep.cancelled_at.is_(None),  # type: ignore[union-attr]
        )
        .values(cancelled_at=now)
    )


async def _premature_steps(
    session: AsyncSession, clock: CaseDeadline, stopped_at: datetime
) -> list[str]:
    """The events of steps that fired although the clock had stopped before they fell due: the
    case event stopping it reached escalation after the scheduler fired them. A step due before
    the stop and fired late is not premature: the clock had reached it."""
    return list(
        (
            await session.scalars(
                select(EscalationStep.event_id)
                .where(
                    EscalationStep.deadline_id == clock.id,  # type: ignore[arg-type]
                    EscalationStep.fired_at.is_not(None),  # type: ignore[union-attr]
                    EscalationStep.due_at >= stopped_at,  # type: ignore[arg-type]
                )
                .order_by(EscalationStep.due_at, EscalationStep.id)  # type: ignore[arg-type]
            )
        ).all()
    )


def _warning_step(deadline_id: int, warn_at: datetime) -> EscalationStep:
    planned = first_step(warn_at)
    return EscalationStep(deadline_id=deadline_id, step=planned.step, due_at=planned.due_at)


async def latest_clock(session: AsyncSession, case_id: UUID, kind: str) -> CaseDeadline | None:
    """The case's newest clock of this kind, locked for the change."""
    result: CaseDeadline | None = await session.scalar(
        select(CaseDeadline)
        .where(CaseDeadline.case_id == case_id, CaseDeadline.kind == kind)
        .order_by(CaseDeadline.round.desc())  # type: ignore[attr-defined]
        .limit(1)
        .with_for_update()
    )
    return result
