"""Intake follows its tips' cases so citizens can see where their tip stands.

A case may carry several tips: its own, and near-duplicates that dispatch merged into it
(``whistle.case.merged``). Every step of the case moves each tip linked to it; a tip split back
out (``whistle.case.split``) follows its new case from then on.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import (
    CaseAccepted,
    CaseAssigned,
    CaseClosed,
    CaseMerged,
    CaseOpened,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseSplit,
    CaseStarted,
    CaseStep,
    CaseTriageRequired,
)
from services.intake.models import Tip, TipTimelineEntry
from services.runtime.inbox import Handler


async def _tips_of(session: AsyncSession, case_id: UUID, tip_id: UUID) -> list[Tip]:
    """The tips following a case: those linked to it, and the event's own tip while it is not
    linked to any case yet. Tips from another intake deployment are not ours to update."""
    tips = list(
        await session.scalars(
            select(Tip).where(Tip.case_id == case_id).order_by(Tip.id).with_for_update()  # type: ignore[arg-type]
        )
    )
    if all(tip.id != tip_id for tip in tips):
        own = await session.get(Tip, tip_id, with_for_update=True)
        if own is not None and own.case_id is None:
            tips.append(own)
    return tips


def _advance(
    session: AsyncSession, tip: Tip, status: str, at: datetime, mark: str | None = None
) -> None:
    if mark is not None:
        session.add(TipTimelineEntry(tip_id=tip.id, status=mark, at=at))
    if tip.status != status:
        if status == "resolved":
            tip.resolution_round += 1  # a new resolution the citizen may rate
        tip.status = status
        session.add(TipTimelineEntry(tip_id=tip.id, status=status, at=at))


async def on_case_opened(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    opened = event.payload(CaseOpened)
    tip = await session.get(Tip, opened.tip_id, with_for_update=True)
    if tip is not None:
        tip.case_id = opened.case_id
        tip.joined_case = False


async def on_case_merged(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    """The tip joined an open case: it follows that case, and shows where the case stands."""
    merged = event.payload(CaseMerged)
    tip = await session.get(Tip, merged.tip_id, with_for_update=True)
    if tip is None:
        return
    tip.case_id = merged.case_id
    tip.joined_case = True
    sibling = await session.scalar(
        select(Tip).where(Tip.case_id == merged.case_id, Tip.id != tip.id).limit(1)  # type: ignore[arg-type]
    )
    status = sibling.status if sibling is not None else tip.status
    if sibling is not None:
        tip.resolution_round = max(tip.resolution_round, sibling.resolution_round)
    _advance(session, tip, status, event.time, mark="merged")


async def on_case_split(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    """The tip was split back out into a case of its own, triaged anew."""
    split = event.payload(CaseSplit)
    tip = await session.get(Tip, split.split_tip_id, with_for_update=True)
    if tip is None:
        return
    # The new case's events travel on its own partition and may have been seen first.
    new_case_seen = tip.case_id == split.split_case_id and not tip.joined_case
    tip.case_id = split.split_case_id
    tip.joined_case = False
    if new_case_seen:
        session.add(TipTimelineEntry(tip_id=tip.id, status="split", at=event.time))
    else:
        _advance(session, tip, "received", event.time, mark="split")


def _moves_to(
    model: type[CaseStep | CaseTriageRequired | CaseAssigned], status: str, mark: str | None = None
) -> Handler:
    """A handler moving the case's tips to the citizen-facing ``status`` named by a case event,
    with a ``mark`` on their timelines if given."""

    async def handle(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        step = event.payload(model)
        for tip in await _tips_of(session, step.case_id, step.tip_id):
            _advance(session, tip, status, event.time, mark)

    return handle


async def on_case_closed(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    """Closed; one closed without being resolved (the county declined an out-of-list tip, 准入)
    says so on the timeline. The county's own words stay in the case: they are not written
    for the citizen."""
    closed = event.payload(CaseClosed)
    mark = "declined" if closed.reason else None
    for tip in await _tips_of(session, closed.case_id, closed.tip_id):
        _advance(session, tip, "closed", event.time, mark)


# What a citizen is told at each step of the case (texts in services/intake/tips.py).
HANDLERS: dict[str, Handler] = {
    CaseOpened.event_type: on_case_opened,
    CaseMerged.event_type: on_case_merged,
    CaseSplit.event_type: on_case_split,
    CaseTriageRequired.event_type: _moves_to(CaseTriageRequired, "triage"),
    CaseAssigned.event_type: _moves_to(CaseAssigned, "assigned"),
    CaseRejected.event_type: _moves_to(CaseRejected, "triage"),
    CaseAccepted.event_type: _moves_to(CaseAccepted, "in_progress"),
    CaseStarted.event_type: _moves_to(CaseStarted, "in_progress"),
    CaseReopened.event_type: _moves_to(CaseReopened, "in_progress", mark="reopened"),
    CaseResolved.event_type: _moves_to(CaseResolved, "resolved"),
    CaseClosed.event_type: on_case_closed,
}
