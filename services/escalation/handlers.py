"""Escalation starts a case's clocks when it is assigned."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent, new_event
from contracts.events import CaseAssigned, Deadline, DeadlinesSet
from contracts.topics import DEADLINES
from services.escalation.calendar import BusinessCalendar
from services.escalation.deadlines import deadlines_for
from services.escalation.models import CaseDeadline
from services.escalation.policies import PolicyBook
from services.runtime.clock import Clock
from services.runtime.inbox import PoisonEvent
from services.runtime.outbox import stage

SOURCE = "whistle/escalation"
log = logging.getLogger(__name__)
PROVISIONAL_DEADLINES = Counter(
    "whistle_deadlines_provisional_total",
    "Deadlines counted Monday to Friday because the business calendar lacks their year",
)


class AssignmentClocks:
    """Handles ``whistle.case.assigned``: freeze the policy onto the case, set its deadlines."""

    def __init__(
        self,
        policies: Callable[[], PolicyBook],
        calendar: Callable[[], BusinessCalendar],
        clock: Clock,
    ) -> None:
        self._policies = policies
        self._calendar = calendar
        self._clock = clock

    async def __call__(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        assigned = event.payload(CaseAssigned)
        policy = self._policies().get(assigned.deadline_policy)
        if policy is None:
            raise PoisonEvent(f"unknown deadline policy {assigned.deadline_policy!r}")
        # The clocks run from the assignment, not from when this service got round to it.
        start = event.time
        calendar = self._calendar()
        computed = deadlines_for(policy, start, calendar)
        # Which holidays and working hours counted is part of the terms, like the policy.
        snapshot = {**policy.model_dump(mode="json"), "calendar_version": calendar.version}
        created = []
        for deadline in computed:
            # A case assigned again (after a rejection, or by arbitration) keeps the clocks it
            # has: the citizen's deadline does not restart because a unit sent the case back.
            inserted = await session.scalar(
                insert(CaseDeadline)
                .values(
                    case_id=assigned.case_id,
                    kind=deadline.kind,
                    status="running",
                    started_at=start,
                    due_at=deadline.due_at,
                    warn_at=deadline.warn_at,
                    policy_id=policy.id,
                    policy_snapshot=snapshot,
                    provisional_reason=deadline.provisional_reason,
                )
                .on_conflict_do_nothing(index_elements=["case_id", "kind"])
                .returning(CaseDeadline.id)
            )
            if inserted is not None:
                created.append(deadline)
                if deadline.provisional_reason:
                    PROVISIONAL_DEADLINES.inc()
                    log.warning(
                        "provisional %s deadline: %s", deadline.kind, deadline.provisional_reason
                    )
        if not created:
            return
        payload = DeadlinesSet(
            case_id=assigned.case_id,
            policy_id=policy.id,
            urgency=assigned.urgency,
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
        stage(session, DEADLINES, new_event(SOURCE, str(assigned.case_id), payload, self._clock()))
