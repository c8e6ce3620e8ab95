"""Intake follows its tips' cases so citizens can see where their tip stands."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import CaseAssigned, CaseOpened, CaseTriageRequired
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


async def on_triage_required(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    await _move(session, event.payload(CaseTriageRequired).tip_id, event, "triage")


async def on_case_assigned(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    await _move(session, event.payload(CaseAssigned).tip_id, event, "assigned")


HANDLERS: dict[str, Handler] = {
    CaseOpened.event_type: on_case_opened,
    CaseTriageRequired.event_type: on_triage_required,
    CaseAssigned.event_type: on_case_assigned,
}
