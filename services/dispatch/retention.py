"""What dispatch forgets, and when: its copies of a citizen's words and place (``tip_text``,
the case's point, each merged tip as received, the words a dispatcher labelled for triage),
``WHISTLE_TIP_RETENTION_DAYS`` after the case last closed — as intake forgets its own
(services/intake/retention.py, docs/privacy.md). The case itself stays: matter, township,
village, grid, unit, dates and its timeline are the county's record. A tip erased earlier by
intake (on request) is erased here at once, when its ``whistle.personal_data.erased``
arrives (``erase_tip``, services/dispatch/consumers.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    String,
    Uuid,
    delete,
    func,
    literal,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.cases import CaseStatus
from services.dispatch.models import (
    Case,
    CaseTimelineEntry,
    CaseTip,
    LegalReview,
    TipText,
    TriageLabel,
)
from services.runtime.retention import ERASED_TEXT, Sweep
from services.runtime.service import Runtime

# A step's point where the officer acted (contracts.events.FieldStep.point).
POINT = "point"

CLOSED = "whistle.case.closed"


def _closed_before(cutoff: datetime):  # type: ignore[no-untyped-def]
    """The ids of cases closed (and still closed), last closed before ``cutoff``."""
    return (
        select(CaseTimelineEntry.case_id)
        .join(Case, Case.id == CaseTimelineEntry.case_id)  # type: ignore[arg-type]
        .where(Case.status == CaseStatus.CLOSED, CaseTimelineEntry.type == CLOSED)  # type: ignore[arg-type]
        .group_by(CaseTimelineEntry.case_id)  # type: ignore[arg-type]
        .having(func.max(CaseTimelineEntry.time) < cutoff)
    )


async def erase_tip_texts(session: AsyncSession, cutoff: datetime) -> int:
    """Erase the words and places of every tip of the cases closed before ``cutoff`` (the one
    each was opened for and those merged into it); how many tips' texts were erased."""
    closed = _closed_before(cutoff)
    tips = union(
        select(Case.tip_id).where(Case.id.in_(closed)),  # type: ignore[union-attr]
        select(CaseTip.tip_id).where(CaseTip.case_id.in_(closed)),  # type: ignore[attr-defined]
    )
    return await _erase(session, tips, Case.id.in_(closed), CaseTip.case_id.in_(closed))  # type: ignore[union-attr, attr-defined]


async def erase_tip(session: AsyncSession, tip_id: UUID) -> int:
    """Erase one tip's words and place at once, as intake erased it
    (``whistle.personal_data.erased``): its ``tip_text``, the point of the case it opened, and
    its record as merged into another case. The case stays; 1 if there were words to erase."""
    return await _erase(
        session,
        # Typed: a UUID read back from asyncpg is its own class, which literal() cannot infer.
        select(literal(tip_id, Uuid)),
        Case.tip_id == tip_id,  # type: ignore[arg-type]
        CaseTip.tip_id == tip_id,  # type: ignore[arg-type]
    )


async def _erase(
    session: AsyncSession,
    tips: Any,
    cases: ColumnElement[bool],
    merged: ColumnElement[bool],
) -> int:
    """Erase the words of ``tips``, the points of the ``cases`` — where reported, and where
    their officers acted (a step's ``point``, on the timeline and in a held penalty decision) —
    and the ``merged`` tips as received; how many tips' words were erased."""
    result = await session.execute(
        update(TipText)
        .where(
            TipText.tip_id.in_(tips),  # type: ignore[attr-defined]
            or_(TipText.text != ERASED_TEXT, TipText.address.is_not(None)),  # type: ignore[union-attr]
        )
        .values(text=ERASED_TEXT, address=None)
    )
    await session.execute(
        update(Case).where(cases, Case.lat.is_not(None)).values(lat=None, lon=None)  # type: ignore[union-attr]
    )
    # An officer's point is where the citizen's problem is: it goes with the tip's place.
    erased_cases = select(Case.id).where(cases)
    await session.execute(
        update(CaseTimelineEntry)
        .where(
            CaseTimelineEntry.case_id.in_(erased_cases),  # type: ignore[attr-defined]
            CaseTimelineEntry.data.has_key(POINT),  # type: ignore[attr-defined]
        )
        .values(data=CaseTimelineEntry.data.op("-")(literal(POINT, String)))  # type: ignore[attr-defined]
    )
    await session.execute(
        update(LegalReview)
        .where(LegalReview.case_id.in_(erased_cases), LegalReview.point.is_not(None))  # type: ignore[attr-defined, union-attr]
        .values(point=None)
    )
    # The words a dispatcher labelled for the triage model go with the tip's.
    await session.execute(delete(TriageLabel).where(TriageLabel.tip_id.in_(tips)))  # type: ignore[attr-defined]
    # A merged tip as received, kept to split it off while the case is open: all of it.
    await session.execute(
        update(CaseTip).where(merged, CaseTip.tip != {}).values(tip={})  # type: ignore[attr-defined]
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def sweeps(runtime: Runtime) -> list[Sweep]:
    kept = timedelta(days=runtime.settings.tip_retention_days)

    async def tip_texts(now: datetime) -> int:
        async with runtime.transaction() as session:
            return await erase_tip_texts(session, now - kept)

    return [Sweep("tip", tip_texts)]
