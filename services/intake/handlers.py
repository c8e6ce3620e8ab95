"""Intake follows its tips' cases so citizens can see where their tip stands."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import (
    CaseAccepted,
    CaseAssigned,
    CaseClosed,
    CaseOpened,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseStarted,
    CaseStep,
    CaseTriageRequired,
)
from services.intake.models import Tip, TipTimelineEntry
from services.runtime.inbox import Handler


async def _move(session: AsyncSession, tip_id: UUID, event: CloudEvent, status: str) -> None:
    tip = await session.get(Tip, tip_id, with_for_update=True)
    if tip is None:
        return  # a tip from another intake deployment; nothing of ours to update
    if tip.status != status:
        tip.status = status
        session.add(TipTimelineEntry(tip_id=tip_id, status=status, at=event.time))


async def on_case_opened(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    opened = event.payload(CaseOpened)
    tip = await session.get(Tip, opened.tip_id, with_for_update=True)
    if tip is not None:
        tip.case_id = opened.case_id


def _moves_to(model: type[CaseStep | CaseTriageRequired | CaseAssigned], status: str) -> Handler:
    """A handler moving the tip to the citizen-facing ``status`` named by a case event."""

    async def handle(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        await _move(session, event.payload(model).tip_id, event, status)

    return handle


# What a citizen is told at each step of the case (texts in services/intake/api.py).
HANDLERS: dict[str, Handler] = {
    CaseOpened.event_type: on_case_opened,
    CaseTriageRequired.event_type: _moves_to(CaseTriageRequired, "triage"),
    CaseAssigned.event_type: _moves_to(CaseAssigned, "assigned"),
    CaseRejected.event_type: _moves_to(CaseRejected, "triage"),
    CaseAccepted.event_type: _moves_to(CaseAccepted, "in_progress"),
    CaseStarted.event_type: _moves_to(CaseStarted, "in_progress"),
    CaseReopened.event_type: _moves_to(CaseReopened, "in_progress"),
    CaseResolved.event_type: _moves_to(CaseResolved, "resolved"),
    CaseClosed.event_type: _moves_to(CaseClosed, "closed"),
}
