"""The escalation scheduler: fires due ladder steps from the database, never from memory.

Every ``escalation_scheduler_interval_seconds`` it claims due steps in batches with
``SELECT … FOR UPDATE SKIP LOCKED`` (on the step and its clock), so that several replicas can
run: each due step is claimed by one of them, the others skip it. In the claiming transaction
it marks the step fired, stages its event in the outbox (督办 also on the leadership stream) and
inserts the clock's next step (``services/escalation/ladder.py``). A step already fired or
cancelled, or whose clock stopped, is not fired again: the row lock and the ``fired_at`` /
``cancelled_at`` check under it make each step fire at most once in effect, and the unique
``(deadline_id, generation, step)`` makes a second row for the same step impossible (a clock
moved by an extension or recounted on a completed calendar climbs a new generation).

A summoned department's clocks (吹哨报到: receipt and reply) climb the same ladder; their chase
and supervision are also copied onto the department's own topic, in the case's county
(``escalation.dept.<code>.v1`` in the default county, ``escalation.dept.<county>.<code>.v1`` in
another: ``counties.department_topic_for``).

After downtime, one pass fires everything that fell due, in due order (a clock's next step
is claimed by the next batch of the same pass), each marked late with how late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from prometheus_client import Counter, Histogram
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import EventData, new_event
from contracts.events import (
    CaseChased,
    CaseSupervised,
    DeadlineOverdue,
    DeadlineWarning,
    LadderStep,
    LeadershipNotified,
)
from contracts.tenancy import Counties
from contracts.topics import DEADLINES, LEADERSHIP
from services.escalation import SOURCE
from services.escalation.calendar import BusinessCalendar
from services.escalation.counties import counties_of, department_topic_for
from services.escalation.ladder import lateness, next_step
from services.escalation.models import CaseDeadline, EscalationStep
from services.escalation.policies import DeadlinePolicy
from services.escalation.whistle_protocol import department_copy
from services.runtime.clock import Clock
from services.runtime.db import Sessions
from services.runtime.outbox import stage

log = logging.getLogger(__name__)

STEP_EVENTS: dict[str, type[LadderStep]] = {
    "warning": DeadlineWarning,
    "overdue": DeadlineOverdue,
    "chase": CaseChased,
    "supervise": CaseSupervised,
}
STEPS_FIRED = Counter(
    "whistle_escalation_steps_fired_total", "Escalation ladder steps fired", ["step"]
)
STEP_LAG = Histogram(
    "whistle_escalation_step_lag_seconds",
    "How long after its scheduled time a ladder step fired",
    buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 3600, 86400),
)


class EscalationScheduler:
    def __init__(
        self,
        sessions: Sessions,
        calendar: Callable[[], BusinessCalendar],
        clock: Clock,
        *,
        counties: Counties | None,
        interval_seconds: float = 1.0,
        batch_size: int = 500,
        after_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._calendar = calendar
        self._clock = clock
        # Which county is the default: its departments' topics keep their old names.
        self._counties = counties
        self._interval = interval_seconds
        self._batch_size = batch_size
        self._after_commit = after_commit
        for step in STEP_EVENTS:  # every step shows, 0 until it fires
            STEPS_FIRED.labels(step)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation scheduler pass failed; retrying")
            # Passes start every interval: a long pass is not followed by a whole interval more,
            # which would add its length to every step's lag.
            await asyncio.sleep(max(0.0, self._interval - (loop.time() - started)))

    async def run_once(self) -> int:
        """Fire every step due by now, in batches; returns how many this instance fired."""
        now = self._clock()
        fired = 0
        while True:
            claimed = await self.fire_batch(now)
            fired += claimed
            if claimed == 0:
                return fired

    async def fire_batch(self, now: datetime) -> int:
        """Claim up to a batch of steps due by ``now`` and fire them in one transaction."""
        async with self._sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(EscalationStep, CaseDeadline)
                    .join(CaseDeadline, CaseDeadline.id == EscalationStep.deadline_id)  # type: ignore[arg-type]
                    .where(
                        EscalationStep.fired_at.is_(None),  # type: ignore[union-attr]
                        EscalationStep.cancelled_at.is_(None),  # type: ignore[union-attr]
                        EscalationStep.due_at <= now,  # type: ignore[arg-type]
                    )
                    .order_by(EscalationStep.due_at, EscalationStep.id)  # type: ignore[arg-type]
                    .limit(self._batch_size)
                    # Locks the step and its clock; a clock being stopped right now is skipped
                    # (and never waited for, so stops and firings cannot deadlock).
                    .with_for_update(skip_locked=True)
                )
            ).all()
            calendar = self._calendar()
            # Each case's county, for the events fired about it (counties.py).
            county = await counties_of(session, {deadline.case_id for _, deadline in rows})
            handled = 0
            following: list[dict[str, object]] = []
            for step, deadline in rows:
                if step.fired_at is not None or step.cancelled_at is not None:
                    continue
                if deadline.status != "running":
                    step.cancelled_at = now  # stopped before the stop reached this step
                    continue
                planned = self._fire(
                    session, step, deadline, now, calendar, county.get(deadline.case_id)
                )
                if planned is not None:
                    following.append(planned)
                handled += 1
            if following:
                # One statement for the batch's next steps: building an ORM object per step
                # costs about as much as the rest of firing it.
                await session.execute(insert(EscalationStep), following)
        if handled:
            self._after_commit()
        return len(rows)

    def _fire(
        self,
        session: AsyncSession,
        step: EscalationStep,
        deadline: CaseDeadline,
        now: datetime,
        calendar: BusinessCalendar,
        county: str | None,
    ) -> dict[str, object] | None:
        """Fire ``step`` (of a case of ``county``); returns the clock's next step, to be
        inserted with the batch."""
        late = lateness(step.due_at, now)
        payload = STEP_EVENTS[step.step](
            case_id=deadline.case_id,
            kind=deadline.kind,  # type: ignore[arg-type]
            round=deadline.round,
            due_at=deadline.due_at,
            scheduled_for=step.due_at,
            fired_at=now,
            late_by_seconds=late,
            policy_id=deadline.policy_id,
            whistle_id=deadline.whistle_id,
            department_code=deadline.department_code,
            decision_id=deadline.decision_id,
        )
        subject = str(deadline.case_id)
        event = new_event(SOURCE, subject, payload, now, county)
        stage(session, DEADLINES, event)
        if deadline.department_code is not None and step.step in ("chase", "supervise"):
            # A summoned department hears of its own chases and supervisions on its topic, as
            # does a department owning a joint meeting's decision.
            topic = department_topic_for(deadline.department_code, event, self._counties)
            stage(session, topic, department_copy(event))
        if step.step == "supervise":
            # The leadership stream: at once, with the supervision it follows.
            notice: EventData = LeadershipNotified(
                **payload.model_dump(), supervision_event_id=event.id
            )
            stage(session, LEADERSHIP, new_event(SOURCE, subject, notice, now, county))
        step.fired_at, step.late_by_seconds, step.event_id = now, late, event.id
        STEPS_FIRED.labels(step.step).inc()
        STEP_LAG.observe((now - step.due_at).total_seconds())

        frozen = {k: v for k, v in deadline.policy_snapshot.items() if k != "calendar_version"}
        policy = DeadlinePolicy.model_validate(frozen)
        following = next_step(
            step.step,  # type: ignore[arg-type]
            step.due_at,
            due_at=deadline.due_at,
            policy=policy,
            calendar=calendar,
        )
        if following is None:
            return None
        return {
            "deadline_id": deadline.id,
            "step": following.step,
            "generation": step.generation,
            "due_at": following.due_at,
            "provisional_reason": following.provisional_reason,
        }
