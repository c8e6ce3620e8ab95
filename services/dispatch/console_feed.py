"""What dispatch keeps for its console from the events it consumes (consumers.py says which):
read models beside the cases, written in the same transaction as the event's other effects.

- The tip's text, in the same transaction as the case it opens: the case itself keeps only
  the classification, and a dispatcher triaging a tip must read what the citizen said.
- Each case's clocks from ``escalation.deadlines.v1`` (set, stopped, extended, counted again
  once the business calendar had their year), so that the console colours open cases
  from dispatch's own database, in the caller's scope, without a cross-origin call to
  escalation (whose deadlines endpoint knows neither townships nor units).
- Each case's timeline: every event of ``dispatch.cases.v1`` and ``escalation.deadlines.v1``
  keyed by the case (the CloudEvents subject), as published.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import (
    DeadlineRecomputed,
    DeadlinesSet,
    DeadlineStopped,
    ExtensionDecided,
    TipReceived,
)
from services.dispatch.deadline_colour import LEGAL_REVIEW_CLOCK
from services.dispatch.models import CaseClock, CaseTimelineEntry, TipText
from services.runtime.db import bound_insert

# The case's own clocks, a referral's (移送) and a request for assistance's (协助) included,
# which the township answers, and its legal review's (法制审核, while a decision waits for it);
# a summoned department's whistle clocks are not the case's colour.
CASE_CLOCKS = (
    "first_response",
    "resolution",
    "referral_acceptance",
    "assistance_response",
    LEGAL_REVIEW_CLOCK,
)


# Built once (services/runtime/db.py says why); each tip, event or clock binds its values.
KEEP_TIP_TEXT = bound_insert(TipText.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]
ON_TIMELINE = bound_insert(CaseTimelineEntry.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]
_CLOCK = bound_insert(
    CaseClock.__table__,  # type: ignore[attr-defined]
    "case_id",
    "kind",
    "round",
    "warn_at",
    "due_at",
)
SET_CLOCK = _CLOCK.on_conflict_do_update(
    index_elements=["case_id", "kind", "round"],
    set_={"warn_at": _CLOCK.excluded.warn_at, "due_at": _CLOCK.excluded.due_at},
)


async def keep_tip_text(session: AsyncSession, tip: TipReceived) -> None:
    """The citizen's words, beside the case their tip opened or joined."""
    await session.execute(
        KEEP_TIP_TEXT,
        {
            "tip_id": tip.tip_id,
            "text": tip.text,
            "address": tip.address,
            "channel": tip.channel,
            "received_at": tip.received_at,
        },
    )


async def record_on_timeline(session: AsyncSession, case_id: UUID, event: CloudEvent) -> None:
    """The event on its case's timeline, as published; a deadline event also on its clock."""
    await session.execute(
        ON_TIMELINE,
        {
            "source": event.source,
            "event_id": event.id,
            "case_id": case_id,
            "type": event.type,
            "time": event.time,
            "data": event.data,
        },
    )
    if event.type == DeadlinesSet.event_type:
        await _clocks_set(session, event.payload(DeadlinesSet))
    elif event.type == DeadlineStopped.event_type:
        await _clock_stopped(session, event.payload(DeadlineStopped))
    elif event.type == ExtensionDecided.event_type:
        await _clock_extended(session, event.payload(ExtensionDecided))
    elif event.type == DeadlineRecomputed.event_type:
        await _clock_recounted(session, event.payload(DeadlineRecomputed))


async def _clocks_set(session: AsyncSession, data: DeadlinesSet) -> None:
    clocks = [
        {
            "case_id": data.case_id,
            "kind": deadline.kind,
            "round": deadline.round,
            "warn_at": deadline.warn_at,
            "due_at": deadline.due_at,
        }
        for deadline in data.deadlines
        if deadline.kind in CASE_CLOCKS
    ]
    if clocks:
        await session.execute(SET_CLOCK, clocks)


async def _update_clock(
    session: AsyncSession, case_id: UUID, kind: str, round_: int, **values: Any
) -> None:
    if kind in CASE_CLOCKS:
        await session.execute(
            update(CaseClock)
            .where(
                CaseClock.case_id == case_id,  # type: ignore[arg-type]
                CaseClock.kind == kind,  # type: ignore[arg-type]
                CaseClock.round == round_,  # type: ignore[arg-type]
            )
            .values(**values)
        )


async def _clock_stopped(session: AsyncSession, data: DeadlineStopped) -> None:
    await _update_clock(
        session,
        data.case_id,
        data.kind,
        data.round,
        stopped_at=data.stopped_at,
        on_time=data.on_time,
    )


async def _clock_extended(session: AsyncSession, data: ExtensionDecided) -> None:
    if data.approved and data.new_due_at is not None:
        await _update_clock(session, data.case_id, data.kind, data.round, due_at=data.new_due_at)


async def _clock_recounted(session: AsyncSession, data: DeadlineRecomputed) -> None:
    if data.whistle_id is None:  # a department's clock of the same kind is not the case's
        await _update_clock(
            session, data.case_id, data.kind, data.round, due_at=data.due_at, warn_at=data.warn_at
        )
