"""Everything intake consumes, and what each event does: the whole subscription in one place.

Intake follows dispatch's cases (``dispatch.cases.v1``) so that citizens see where their tips
stand: each event of a case moves the tips following it (tips.py) to the status the citizen is
shown for that step, with a mark on their timelines where the step says more than a status.
Intake also takes from that topic the findings of units' inspections (综合查一次, 定岗巡查,
``whistle.inspection.completed``): each becomes a tip on channel ``inspection`` through the one
acceptance path every channel takes (channels.py), and so a case, as a grid worker's report
does. Each handler runs in the inbox's transaction: its effects commit with the event's
``(source, id)``, exactly once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import (
    CaseAccepted,
    CaseAssigned,
    CaseClosed,
    CaseContacted,
    CaseMerged,
    CaseOpened,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseSplit,
    CaseStarted,
    CaseStep,
    CaseTriageRequired,
    InspectionTaskCompleted,
)
from contracts.topics import CASES
from services.intake import channels, tips
from services.intake.channels import NewTip
from services.intake.contact import ContactVault
from services.runtime.inbox import Handler, Subscription
from services.runtime.service import Runtime


def subscription(runtime: Runtime) -> Subscription:
    """The topic intake consumes, then each event type and its handler; the statuses and marks
    are what the citizen is told at each step of the case (texts in tips.py)."""
    return Subscription(
        topics=(CASES,),
        handlers={
            CaseOpened.event_type: case_opened,
            CaseMerged.event_type: case_merged,
            CaseSplit.event_type: case_split,
            CaseTriageRequired.event_type: moves_to(CaseTriageRequired, "triage"),
            CaseAssigned.event_type: moves_to(CaseAssigned, "assigned"),
            CaseRejected.event_type: moves_to(CaseRejected, "triage"),
            CaseAccepted.event_type: moves_to(CaseAccepted, "in_progress"),
            CaseStarted.event_type: moves_to(CaseStarted, "in_progress"),
            CaseReopened.event_type: moves_to(CaseReopened, "in_progress", mark="reopened"),
            CaseResolved.event_type: moves_to(CaseResolved, "resolved"),
            CaseClosed.event_type: case_closed,
            CaseContacted.event_type: case_contacted,
            InspectionTaskCompleted.event_type: inspection_findings(runtime),
        },
    )


def inspection_findings(runtime: Runtime) -> Handler:
    """Each finding of a completed inspection task is accepted as a tip on channel
    ``inspection``, reported when the task was completed; its dedupe key (the task and the
    finding's place in it) makes a redelivered event accept nothing twice."""

    async def handle(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        completed = event.payload(InspectionTaskCompleted)
        vault: ContactVault = runtime.state["vault"]
        task = str(completed.task_id)
        for n, finding in enumerate(completed.findings, start=1):
            new = NewTip(
                channel="inspection",
                text=finding.text,
                location=finding.location,
                grid_id=finding.grid_id,
                resolved_on_spot=finding.resolved_on_spot,
                resolution_note=finding.resolution_note,
                dedupe_key=f"{task}:{n}",
                external_ref=task,
                inspection_task_id=task,
            )
            await channels.accept(
                session,
                vault,
                new,
                completed.completed_at,
                runtime.settings.timezone,
                channels.county_of(runtime, new),  # the finding's grid says whose it is
            )

    return handle


async def case_opened(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    opened = event.payload(CaseOpened)
    await tips.link_to_case(session, opened.tip_id, opened.case_id)


async def case_merged(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    merged = event.payload(CaseMerged)
    await tips.join_case(session, merged.tip_id, merged.case_id, event.time)


async def case_split(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    split = event.payload(CaseSplit)
    await tips.split_off(session, split.split_tip_id, split.split_case_id, event.time)


def moves_to(
    model: type[CaseStep | CaseTriageRequired | CaseAssigned], status: str, mark: str | None = None
) -> Handler:
    """A handler moving the case's tips to ``status``, with a ``mark`` on their timelines if
    given."""

    async def handle(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        step = event.payload(model)
        await tips.follow_case(session, step.case_id, step.tip_id, status, event.time, mark)

    return handle


async def case_closed(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    """A case closed without being resolved (the county declined an out-of-list tip, 准入)
    says so on the timeline. The county's own words stay in the case: they are not written
    for the citizen."""
    closed = event.payload(CaseClosed)
    mark = "declined" if closed.reason else None
    await tips.follow_case(session, closed.case_id, closed.tip_id, "closed", event.time, mark)


async def case_contacted(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    """联系群众: the citizen sees on their timeline that the unit says it contacted them, when
    it says it did — a claim they can dispute, since 响应率 rests on it."""
    contacted = event.payload(CaseContacted)
    await tips.mark_case(
        session, contacted.case_id, contacted.tip_id, "contacted", contacted.contacted_at
    )
